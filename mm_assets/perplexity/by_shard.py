"""Perplexity scores one raw shard at a time: the unit of work that `map_shards` runs in process
or on Ray (see `mm_assets/embeddings/by_shard.py` for the contract).

The scorer travels as a storage location (root, options, path under it), so a Ray worker on
another machine loads it from the artifact store or the checkpoint store as the driver would.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mm_assets.shard_map import ShardResult, resumable, task_device
from mm_assets.storage import Storage, local_dir, local_path


@dataclass(frozen=True)
class ScorerLocation:
    """A LLaVA-format model directory: `rel` under the storage at `root` ("" = the root itself)."""
    root: str
    options: dict
    rel: str
    version: str            # the scorer's content version (what the scores' version is keyed by)


_loaded: dict[str, tuple] = {}


def _cached_scorer(scorer: ScorerLocation):
    """(model, processor), loaded once per process (a Ray worker runs many shard tasks)."""
    from mm_assets.training.trainer import load_model_and_processor

    key = f"{scorer.root}|{scorer.rel}|{scorer.version}"
    if key not in _loaded:
        _loaded.clear()
        with local_dir(Storage(scorer.root, scorer.options), scorer.rel) as path:
            model, processor = load_model_and_processor(path, "segments")
        _loaded[key] = (model.to(task_device()), processor)
    return _loaded[key]


@dataclass(frozen=True)
class ScoreShardTask:
    storage_root: str
    storage_options: dict
    raw_root: str            # the domain's raw_shards root, relative to the storage root
    tar: str                 # the shard's tar name in the raw manifest
    out_root: str            # the scores version's root, relative to the storage root
    scorer: ScorerLocation
    domain: str

    @property
    def shard(self) -> str:
        return self.tar.removesuffix(".tar")


def score_shard(task: ScoreShardTask) -> ShardResult:
    """Score one raw shard into `out_root/shards/` (or reuse its complete output)."""
    from mm_assets.perplexity.score import score_with_model

    st = Storage(task.storage_root, task.storage_options)
    out = st.child(task.out_root)

    def compute() -> dict:
        model, processor = _cached_scorer(task.scorer)
        with local_path(st.child(task.raw_root), task.tar) as path:
            scores = score_with_model(model, processor, [path]).with_columns(pl.lit(task.domain).alias("domain"))
        name = f"shards/{task.shard}.parquet"
        return {"parquet": name, "rows": scores.height, "sha256": out.write_parquet(name, scores)}

    return resumable(out, f"shards/{task.shard}.part.json", task.shard, compute)


def concat_shard_scores(out: Storage, records: list[dict]) -> pl.DataFrame:
    """The shards' score tables, in manifest order, as one table."""
    from mm_assets.perplexity.score import SCORES_SCHEMA

    tables = [out.read_parquet(r["parquet"]) for r in records]
    return pl.concat(tables) if tables else pl.DataFrame(schema=SCORES_SCHEMA)
