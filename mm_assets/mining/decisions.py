"""Recipe decisions on stored neighbours: up-sampling mined samples, removing contaminated ones.

Both return a step's decisions table (`mm_assets.curated.ledger.STEP_DECISION_COLUMNS`) with
one row per sample of the pool; mining adds an integer ``copies`` column (how many copies
the curated dataset keeps: 1 for "keep").

Mining: a sample among the top-``k`` neighbours (in ``space``) of an eval item of benchmark
b is up-sampled by the recipe's factor for b (``upsample[b]``; benchmarks without a factor
mine nothing). A sample mined for several benchmarks takes the largest factor. A
fractional factor f becomes floor(f) or floor(f) + 1 copies, the latter with probability
f - floor(f), decided by a hash of (params_hash, sample_id): deterministic, and the expected
number of copies over many samples is f.

Decontamination: a sample whose maximum similarity to any eval item (in ``space``) is at
least ``threshold`` is dropped (``related_id`` = that eval item, ``score`` = the
similarity); with ``enabled=False`` it is kept and the reason says it would be removed.

The composer must apply "drop" decisions before "upsample" ones, so that a leaked eval
item that is also a top neighbour of its own eval item is never multiplied.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import polars as pl

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS


def _unit_interval(params_hash: str, sample_id: str) -> float:
    h = hashlib.sha256(f"{params_hash}/{sample_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def copies_for(factor: float, params_hash: str, sample_id: str) -> int:
    """Deterministic rounding of an up-sampling factor (see the module docstring)."""
    if not math.isfinite(factor) or factor < 1.0:
        raise ValueError(f"up-sampling factor must be a finite number >= 1, got {factor}")
    base = math.floor(factor)
    return base + (1 if _unit_interval(params_hash, sample_id) < factor - base else 0)


def _samples(samples: pl.DataFrame) -> pl.DataFrame:
    s = samples.select("sample_id", "domain")
    if s["sample_id"].is_duplicated().any():
        raise ValueError("duplicate sample_id in the samples table")
    return s


def mining_decisions(neighbours: pl.DataFrame, samples: pl.DataFrame, *, k: int, upsample: Mapping[str, float],
                     params_hash: str, space: str = "question") -> pl.DataFrame:
    """Decisions (+ ``copies``) for every sample of `samples` (``sample_id``, ``domain``)
    from an `eval_neighbours` table computed with at least `k` neighbours per item."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    stored = neighbours.filter(pl.col("space") == space)
    hits = (stored.filter(pl.col("rank") <= k)
            .with_columns(pl.col("benchmark").replace_strict({b: float(f) for b, f in upsample.items()}, default=1.0,
                                                             return_dtype=pl.Float64).alias("factor")))
    best = (hits.sort(["factor", "similarity", "rank", "eval_item_id"], descending=[True, True, False, False])
            .group_by("sample_id", maintain_order=True)
            .agg(pl.col("factor").first(), pl.col("benchmark").first(), pl.col("eval_item_id").first(),
                 pl.col("similarity").first(), pl.col("rank").first(),
                 pl.col("eval_item_id").n_unique().alias("items"),
                 pl.col("benchmark").unique().sort().alias("benchmarks")))
    out = _samples(samples).join(best, on="sample_id", how="left")
    copies, decisions, reasons = [], [], []
    for r in out.iter_rows(named=True):
        if r["factor"] is None:
            copies.append(1)
            decisions.append("keep")
            reasons.append(f"not among the top-{k} {space} neighbours of any eval item")
            continue
        c = copies_for(r["factor"], params_hash, r["sample_id"])
        where = (f"top-{k} {space} neighbour of {r['items']} eval item(s) of {', '.join(r['benchmarks'])} "
                 f"(best {r['eval_item_id']}: rank {r['rank']}, similarity {r['similarity']:.4f})")
        copies.append(c)
        if c > 1:
            decisions.append("upsample")
            reasons.append(f"{where}; up-sampled x{c} ({r['benchmark']} factor {r['factor']:g})")
        else:
            decisions.append("keep")
            reasons.append(f"{where}; no up-sampling ({r['benchmark']} factor {r['factor']:g})")
    return out.with_columns(
        pl.lit(params_hash, dtype=pl.String).alias("params_hash"),
        pl.col("similarity").alias("score"),
        pl.Series("decision", decisions, dtype=pl.String),
        pl.Series("reason", reasons, dtype=pl.String),
        pl.col("eval_item_id").alias("related_id"),
        pl.Series("copies", copies, dtype=pl.Int32),
    ).select(*STEP_DECISION_COLUMNS, "copies")


def decontamination_decisions(similarities: pl.DataFrame, samples: pl.DataFrame, *, threshold: float,
                              enabled: bool, params_hash: str, space: str = "image") -> pl.DataFrame:
    """Decisions for every sample of `samples` from `nearest_eval_items` rows or an
    `eval_neighbours` table (either way the maximum similarity per sample in `space` is used)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    best = (similarities.filter(pl.col("space") == space)
            .sort(["similarity", "eval_item_id"], descending=[True, False])
            .group_by("sample_id", maintain_order=True)
            .agg(pl.col("similarity").first(), pl.col("eval_item_id").first(), pl.col("benchmark").first()))
    out = _samples(samples).join(best, on="sample_id", how="left")
    contaminated = pl.col("similarity") >= threshold
    what = (pl.lit(f"{space} similarity ") + pl.col("similarity").round(4).cast(pl.String)
            + pl.lit(" to ") + pl.col("benchmark") + pl.lit(" item ") + pl.col("eval_item_id"))
    return out.with_columns(
        pl.lit(params_hash, dtype=pl.String).alias("params_hash"),
        pl.col("similarity").alias("score"),
        pl.when(contaminated & pl.lit(enabled)).then(pl.lit("drop")).otherwise(pl.lit("keep")).alias("decision"),
        pl.when(pl.col("similarity").is_null()).then(pl.lit(f"no {space} embedding: not compared"))
        .when(contaminated & pl.lit(enabled))
        .then(pl.lit("contaminated: ") + what + pl.lit(f" >= threshold {threshold:g}"))
        .when(contaminated)
        .then(pl.lit("would be removed (decontamination disabled): ") + what + pl.lit(f" >= threshold {threshold:g}"))
        .otherwise(pl.lit("clean: max ") + what + pl.lit(f" < threshold {threshold:g}")).alias("reason"),
        pl.when(pl.col("similarity").is_null()).then(None).otherwise(pl.col("eval_item_id")).alias("related_id"),
    ).select(STEP_DECISION_COLUMNS)
