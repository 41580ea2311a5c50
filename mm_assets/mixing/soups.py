"""Soups as checkpoints: a manifest of experts and weights in the checkpoint store, merged when
it is evaluated (no Dagster here).

A soup directory holds `soup.json` — the experts (checkpoint names and content versions), the
weights (none: uniform) and the merge code version — next to the first expert's configuration,
tokenizer and processor files, and is sealed like any checkpoint (manifest with every file's
sha256, then the `COMPLETE` marker). So the checkpoint sensor registers it and requests its
evals, and its version (the hash of its files) is the hash of its experts' versions and weights:
the same experts, changed, make another soup. No weights are stored: `model_dir` merges them
(`mm_assets/mixing/merge.py`) into a scratch directory for the duration of an evaluation — the
loaders of both back ends read a directory — and removes them afterwards, so 255 soups of a
7B model do not cost 255 × 15 GB of disk.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from mm_assets.checkpoints import MANIFEST, MARKER, checkpoint_version, seal_local_checkpoint, upload_sealed, \
    verify_checkpoint
from mm_assets.metadata import content_digest
from mm_assets.scratch import scratch_dir
from mm_assets.storage import Storage, local_dir

SOUP = "soup.json"
MERGE_CODE_VERSION = "1"
# what a soup does not copy from its first expert: the weights (merged at evaluation) and what
# only resuming a training run needs
NOT_COPIED = (".safetensors", ".safetensors.index.json", "optimizer.pt", "trainer_state.json", MANIFEST, MARKER)


def is_vision_tower(key: str) -> bool:
    """Tensors of the vision tower, which training keeps frozen: copied, checked identical."""
    return "vision_tower." in key


def verified_experts(store: Storage, experts: Sequence[str], versions: Sequence[str] | None = None,
                     known: dict[str, dict] | None = None) -> list[dict]:
    """Each expert's verified manifest (its files hashed here, unless `known` has it already
    verified); with `versions`, each must still have the content version a soup names."""
    known = known or {}
    manifests = [known[name] if name in known else verify_checkpoint(store, name) for name in experts]
    for name, manifest, want in zip(experts, manifests, versions or [None] * len(experts)):
        if want is not None and checkpoint_version(manifest) != want:
            raise ValueError(f"expert {name} has changed since the soup was written (version "
                             f"{checkpoint_version(manifest)}, the soup names {want})")
    return manifests


def soup_spec(experts: Sequence[str], manifests: Sequence[dict], weights: Sequence[float] | None = None) -> dict:
    """What identifies a soup: each expert's name and content version (from its verified
    manifest), the weights rounded to float32 (as the merge uses them), the merge code."""
    if weights is not None:
        import numpy as np

        if len(weights) != len(experts):
            raise ValueError(f"{len(weights)} weights for {len(experts)} experts")
        weights = [float(np.float32(w)) for w in weights]
    return {"experts": [{"name": name, "version": checkpoint_version(m)} for name, m in zip(experts, manifests)],
            "weights": weights, "merge_code_version": MERGE_CODE_VERSION}


def soup_name(spec: dict, label: str | None = None) -> str:
    """`soup-<label>-<hash>`: the label names the subset (e.g. its domains), the hash the spec."""
    digest = content_digest(spec)[:12]
    return f"soup-{label}-{digest}" if label else f"soup-{digest}"


def write_soup(store: Storage, experts: Sequence[str], weights: Sequence[float] | None = None,
               label: str | None = None, manifests: Sequence[dict] | None = None) -> str:
    """Write (or find) the soup of `experts` in the checkpoint store; returns its name.
    `manifests`: the experts' already verified (`verified_experts`), for many soups of them."""
    if not experts:
        raise ValueError("a soup needs at least one expert")
    if len(set(experts)) != len(experts):
        raise ValueError(f"an expert appears twice in {list(experts)}")
    manifests = manifests or verified_experts(store, experts)
    spec = soup_spec(experts, manifests, weights)
    name = soup_name(spec, label)
    if store.exists(f"{name}/{MARKER}"):
        verify_checkpoint(store, name)
        return name
    first = manifests[0]
    with scratch_dir("mm-soup-") as tmp, local_dir(store, experts[0]) as src:
        out = Path(tmp) / name
        out.mkdir()
        for rel in sorted(first["files"]):
            if not rel.endswith(NOT_COPIED):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(src) / rel, out / rel)
        (out / SOUP).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        bases = {m.get("base_model_version") for m in manifests}
        base = bases.pop() if len(bases) == 1 else None        # the experts' common start, when they share one
        seal_local_checkpoint(out, {"model": first.get("model", ""), "soup": spec, "experts": list(experts),
                                    "base_model_version": base})
        upload_sealed(out, store.child(name))
    return name


def read_weights(store: Storage, name: str, manifest: dict) -> dict:
    """Every tensor of a checkpoint's safetensors files (one file or shards)."""
    from safetensors.torch import load, load_file

    files = sorted(f for f in manifest["files"] if f.endswith(".safetensors"))
    if not files:
        raise ValueError(f"expert {name} has no safetensors weights")
    state = {}
    for rel in files:
        part = load_file(store.uri(f"{name}/{rel}")) if store.is_local else load(store.read_bytes(f"{name}/{rel}"))
        state.update(part)
    return state


def soup_weights(store: Storage, spec: dict, verified: dict[str, dict] | None = None) -> dict:
    """The merged tensors of a soup; every expert must still have the version the soup names.
    `verified`: experts' manifests already verified (`verified_experts`) by name, for many soups
    of the same experts — their files are not hashed again."""
    from mm_assets.mixing.merge import merge_from_scratch, merge_plan

    manifests = verified_experts(store, [e["name"] for e in spec["experts"]], [e["version"] for e in spec["experts"]],
                                 known=verified)
    cache: dict[int, dict] = {}

    def load(i: int) -> dict:
        if i not in cache:
            cache.clear()                 # one expert in memory at a time
            cache[i] = read_weights(store, spec["experts"][i]["name"], manifests[i])
        return cache[i]

    plan = merge_plan(load(0), frozen=is_vision_tower)
    members = range(len(spec["experts"]))
    weights = None if spec["weights"] is None else dict(enumerate(spec["weights"]))
    return merge_from_scratch(plan, load, members, weights)


@contextlib.contextmanager
def model_dir(store: Storage, name: str) -> Iterator[str]:
    """A local directory a back end can load: the checkpoint itself, or for a soup its files
    plus the merged weights (`model.safetensors`), removed on exit."""
    with local_dir(store, name) as path:
        soup = Path(path) / SOUP
        if not soup.exists():
            yield path
            return
        from safetensors.torch import save_file

        with scratch_dir("mm-soup-eval-") as tmp:
            shutil.copytree(path, tmp, dirs_exist_ok=True)
            state = soup_weights(store, json.loads(soup.read_text()))
            save_file({k: v.contiguous() for k, v in state.items()}, str(Path(tmp) / "model.safetensors"),
                      metadata={"format": "pt"})
            yield tmp


def export_soup(store: Storage, name: str, out: str | Path) -> Path:
    """Write soup `name`'s merged weights as a standalone model directory at `out` (configuration,
    tokenizer, processor, `model.safetensors`) that any loader reads without this project; the
    soup's `soup.json` goes along as `merged_from.json`, so the directory says what it was merged
    from without being taken for a soup (whose weights would be merged again). A checkpoint that
    is not a soup is refused: its own directory already is such a model."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty: export a soup into a new directory")
    verify_checkpoint(store, name)
    with model_dir(store, name) as path:
        if not (Path(path) / SOUP).exists():
            raise ValueError(f"{name} is not a soup: its checkpoint directory is already a loadable model")
        out.mkdir(parents=True, exist_ok=True)
        for f in Path(path).iterdir():
            if f.is_file() and f.name not in (MANIFEST, MARKER):
                shutil.copy2(f, out / ("merged_from.json" if f.name == SOUP else f.name))
    return out
