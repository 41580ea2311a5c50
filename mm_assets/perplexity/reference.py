"""The default perplexity reference model: a tiny LLaVA trained on the trusted pool (no Dagster import).

DFN's lesson (notes/mammoth-and-peers.md §3.1): the filter should be a model trained on a
small *clean* set, so that what it finds unlikely is what differs from clean data. Here:

1. a byte-level BPE tokenizer trained on the pool's text (so any text, also text the pool
   never saw, still tokenises);
2. :func:`mm_assets.vlm.tiny_llava.build_tiny_llava` (vision tower random, or converted from
   a SigLIP2 model passed as ``vision_from`` — e.g. the pipeline's embedder);
3. :func:`mm_assets.training.trainer.train` on the pool's shards — the same data encoding,
   packing and loss as every other training run — for a few epochs; only the last
   checkpoint is written.

In production the reference is any LLaVA-format checkpoint and this module is not used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from mm_assets.checkpoints import MARKER
from mm_assets.training.data import iter_shard_records
from mm_assets.training.trainer import TrainConfig, train
from mm_assets.vlm.tiny_llava import TinyLlavaSpec, build_tiny_llava
from mm_assets.vlm.tokenizer import train_bpe_tokenizer

MODEL_SUBDIR = "model"


def shard_texts(shard_paths: Iterable[str | Path]) -> list[str]:
    """Every turn's text of every sample of the shards, in order (the tokenizer's corpus)."""
    texts = []
    for _key, record, _images in iter_shard_records(shard_paths):
        if isinstance(record, dict):
            texts += [t.get("value") for t in record.get("conversations") or [] if isinstance(t.get("value"), str)]
    return texts


def reference_config(seed: int = 0, epochs: int = 5, lr: float = 3e-3, batch_size: int = 4,
                     max_len: int = 512) -> TrainConfig:
    return TrainConfig(training_run="perplexity-reference", model_name="tiny-llava (trusted pool)",
                       epochs=epochs, lr=lr, schedule="cosine", warmup=0.05, batch_size=batch_size,
                       max_len=max_len, packing=True, seed=seed, save_each_epoch=False)


def train_reference_model(shard_paths: Iterable[str | Path], out_dir: str | Path, seed: int = 0, *,
                          epochs: int = 5, lr: float = 3e-3, batch_size: int = 4, max_len: int = 512,
                          vocab_size: int = 2048, spec: TinyLlavaSpec | None = None, vision_from=None,
                          log_fn: Callable[[dict], None] | None = None) -> Path:
    """Train the tiny reference LLaVA on the trusted pool's WebDataset shards; return its directory.

    ``out_dir/base`` holds the untrained model, ``out_dir/model`` the trained, sealed
    checkpoint (reused as is when it is already complete). Deterministic for the same shards,
    seed, knobs and torch thread count.
    """
    out = Path(out_dir)
    final = out / MODEL_SUBDIR
    if (final / MARKER).exists():
        return final
    shard_paths = [str(p) for p in shard_paths]
    tokenizer = train_bpe_tokenizer(shard_texts(shard_paths), vocab_size=vocab_size)
    base = build_tiny_llava(out / "base", tokenizer, seed=seed, spec=spec, vision_from=vision_from)
    cfg = reference_config(seed=seed, epochs=epochs, lr=lr, batch_size=batch_size, max_len=max_len)
    result = train(cfg, base, shard_paths, out_dir_fn=lambda epoch, step: final, log_fn=log_fn)
    (out / "training_summary.json").write_text(json.dumps(
        {"samples": result.samples, "skipped": result.skipped, "steps": result.total_steps,
         "loss_first": result.history[0]["loss"], "loss_last": result.history[-1]["loss"]}, indent=1))
    return final
