"""Rephrase generation one batch of texts at a time: the unit of work `map_shards` runs in
process or as Ray tasks (GPU workers for the HF and vLLM back ends).

A task carries the back end's spec (kind, style, model), not a loaded model: each worker loads
it once and keeps it. Each batch ends as one chunk of the shared cache (written atomically by
`RephraseCache.append`), so a killed run resumes from the cache as the in-process loop does.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm_assets.shard_map import ShardResult, timed
from mm_assets.storage import Storage

from .cache import RephraseCache


@dataclass(frozen=True)
class RephraserSpec:
    backend: str             # template | hf | vllm
    style: str
    model: str | None


@dataclass(frozen=True)
class RephraseBatchTask:
    cache_root: str          # the cache's storage root (URI or path) and options
    cache_options: dict
    spec: RephraserSpec
    texts: tuple[str, ...]
    index: int               # the batch's place in the run (its shard name)

    @property
    def shard(self) -> str:
        return f"batch-{self.index:06d}"


_loaded: dict[RephraserSpec, object] = {}


def _cached_rephraser(spec: RephraserSpec):
    from .backends import load_rephraser

    if spec not in _loaded:
        _loaded.clear()
        _loaded[spec] = load_rephraser(spec.backend, spec.style, spec.model)
    return _loaded[spec]


def rephrase_batch(task: RephraseBatchTask) -> ShardResult:
    """Generate one batch and append it to the cache; the record carries the outputs in order."""
    def compute() -> dict:
        backend = _cached_rephraser(task.spec)
        generated = backend.rephrase(list(task.texts))
        if len(generated) != len(task.texts):
            raise RuntimeError(f"{backend.name} returned {len(generated)} rewrites for {len(task.texts)} texts")
        cache = RephraseCache(Storage(task.cache_root, task.cache_options), backend.model_id, backend.prompt_version)
        cache.append(list(task.texts), list(generated))
        return {"outputs": list(generated)}

    return timed(task.shard, compute)
