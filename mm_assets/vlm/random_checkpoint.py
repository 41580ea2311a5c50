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


def write_sibling_checkpoint(source: str | Path, directory: str | Path, seed: int, **lineage) -> dict:
    """A copy of the sealed checkpoint `source` whose trainable weights are moved by seeded noise
    and whose vision tower is kept: what another expert trained from the same start with the
    tower frozen looks like to a merge. Sealed with `source`'s manifest updated by `lineage`."""
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from mm_assets.checkpoints import MANIFEST, MARKER

    source, directory = Path(source), Path(directory)
    shutil.copytree(source, directory)
    (directory / MANIFEST).unlink()
    (directory / MARKER).unlink()
    g = torch.Generator().manual_seed(seed)
    for weights in sorted(directory.glob("*.safetensors")):
        state = load_file(str(weights))
        state = {k: v if "vision_tower." in k or not v.is_floating_point()
                 else v + 0.05 * torch.randn(v.shape, generator=g) for k, v in state.items()}
        save_file(state, str(weights), metadata={"format": "pt"})
    manifest = json.loads((source / MANIFEST).read_text())
    manifest.pop("files", None)
    return seal_local_checkpoint(directory, {**manifest, **lineage})
