"""Embeddings stage: a real SigLIP2 (transformers) as plain functions, no Dagster import.

* model: `build_tiny_siglip2` (tiny, local, deterministic), `save_embedder`, `load_embedder`
  (any SigLIP2 checkpoint, `trust_remote_code=False`, offline-aware);
* train: `train_tiny_siglip2` (sigmoid image-text loss + near-duplicate-invariance terms);
* inference: `embed_images` (decode overlapped with the forward pass), `embed_texts`
  (text tower), `embed_shards` (one domain's shards, each row by its tower);
* store: `write_embeddings` / `read_embeddings` (.npy shards + sample-id sidecars);
* quality: `separation_report` against planted near-duplicate groups.
"""

from .inference import (embed_images, embed_shards, embed_texts, iter_shard_images, iter_shard_samples,
                        iter_shard_texts, text_for_sample)
from .model import (TinySiglip2Spec, build_tiny_siglip2, embedding_dim, load_embedder, make_image_processor,
                    save_embedder, train_tokenizer)
from .quality import planted_groups, separation_report, with_exact_duplicates
from .store import EmbeddingsMismatch, read_embeddings, write_embeddings
from .train import Augment, TrainConfig, sigmoid_loss, train_tiny_siglip2, training_pairs

__all__ = [
    "Augment", "EmbeddingsMismatch", "TinySiglip2Spec", "TrainConfig", "build_tiny_siglip2", "embed_images",
    "embed_shards", "embed_texts", "embedding_dim", "iter_shard_images", "iter_shard_samples", "iter_shard_texts",
    "load_embedder", "make_image_processor", "planted_groups", "read_embeddings", "save_embedder",
    "separation_report", "sigmoid_loss", "text_for_sample", "train_tiny_siglip2", "train_tokenizer",
    "training_pairs", "with_exact_duplicates", "write_embeddings",
]
