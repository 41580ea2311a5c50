"""Embeddings stage: a real SigLIP2 (transformers) as plain functions, no Dagster import.

* model: `build_tiny_siglip2` (tiny, local, deterministic), `save_embedder`, `load_embedder`
  (any SigLIP2 checkpoint, `trust_remote_code=False`, offline-aware);
* train: `train_tiny_siglip2` (sigmoid image-text loss + near-duplicate-invariance terms);
* inference: `embed_images` (decode overlapped with the forward pass), `embed_texts`
  (text tower), `embed_shards` (one domain's shards, each row by its tower);
* store: `write_embeddings` / `read_embeddings` (.npy shards + sample-id sidecars);
* quality: `separation_report` against planted near-duplicate groups.
"""

from mm_assets.lazy_exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "inference": ("embed_images", "embed_shards", "embed_texts", "iter_shard_images", "iter_shard_samples",
                  "iter_shard_texts", "text_for_sample"),
    "model": ("TinySiglip2Spec", "build_tiny_siglip2", "embedding_dim", "load_embedder", "make_image_processor",
              "save_embedder", "train_tokenizer"),
    "quality": ("planted_groups", "separation_report", "with_exact_duplicates"),
    "store": ("EmbeddingsMismatch", "read_embeddings", "write_embeddings"),
    "train": ("Augment", "TrainConfig", "sigmoid_loss", "train_tiny_siglip2", "training_pairs"),
})
