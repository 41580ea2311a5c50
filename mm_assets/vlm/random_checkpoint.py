"""A complete, randomly initialised tiny LLaVA checkpoint: what the evaluation stage runs on
until a trained one exists (a real baseline: chance-level scores from the full pipeline)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mm_assets.checkpoints import seal_local_checkpoint


def write_random_checkpoint(directory: str | Path, texts: Iterable[str], seed: int = 0, **lineage) -> dict:
    """Tokenizer trained on `texts`, tiny LLaVA built with `seed`, sealed (manifest + marker)."""
    from mm_assets.vlm.tiny_llava import build_tiny_llava
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer

    directory = Path(directory)
    build_tiny_llava(directory, train_bpe_tokenizer(texts), seed=seed)
    manifest = {"model": "tiny-llava (random init)", "training_run": None, "recipe": None,
                "curated_versions": None, "step": 0, "epoch": 0, "parent": None, "seed": seed, **lineage}
    return seal_local_checkpoint(directory, manifest)
