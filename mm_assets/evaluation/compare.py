"""Recipes compared at equal compute: paired differences to a baseline with bootstrap intervals
(no Dagster).

Each recipe's current training run ends at its token budget; its final checkpoint is compared
with the baseline's final checkpoint on the same eval items (paired: item difficulty cancels),
per benchmark, with a percentile bootstrap over items (`shared/notes/study-statistics.md` §2).
A difference whose interval excludes 0 is marked; a pair trained on budgets more than 1 % apart
is marked as unequal compute instead of being compared as if it were equal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

EQUAL_COMPUTE_TOLERANCE = 0.01
N_BOOT = 2000

COMPARISON_SCHEMA = {
    "recipe": pl.String, "benchmark": pl.String, "checkpoint": pl.String, "baseline_checkpoint": pl.String,
    "tokens_seen": pl.Int64, "baseline_tokens_seen": pl.Int64, "equal_compute": pl.Boolean, "n_items": pl.Int64,
    "score": pl.Float64, "baseline_score": pl.Float64, "delta": pl.Float64, "ci95_low": pl.Float64,
    "ci95_high": pl.Float64, "excludes_zero": pl.Boolean, "n_boot": pl.Int64,
}


def paired_delta(scores: np.ndarray, baseline: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """Mean of `scores - baseline` (paired per item) and its percentile bootstrap interval."""
    d = np.asarray(scores, np.float64) - np.asarray(baseline, np.float64)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(d.mean()), float(lo), float(hi)


def equal_compute(tokens: int | None, baseline_tokens: int | None, tolerance: float = EQUAL_COMPUTE_TOLERANCE) -> bool:
    if not tokens or not baseline_tokens:
        return False
    return abs(tokens - baseline_tokens) <= tolerance * baseline_tokens


def compare_to_baseline(final: dict[str, dict], predictions: Callable[[str, str], pl.DataFrame | None],
                        benchmarks: list[str], baseline: str = "baseline", n_boot: int = N_BOOT) -> pl.DataFrame:
    """One row per (recipe, benchmark): `final[recipe]` is `{"checkpoint", "tokens_seen"}` of the
    recipe's final checkpoint; `predictions(checkpoint, benchmark)` its per-item predictions
    (`item_id`, `score`), or None when that eval does not exist yet."""
    rows = []
    base = final.get(baseline)
    if base is None:
        return pl.DataFrame(schema=COMPARISON_SCHEMA)
    for recipe in sorted(r for r in final if r != baseline):
        ck = final[recipe]
        for bench in benchmarks:
            mine, theirs = predictions(ck["checkpoint"], bench), predictions(base["checkpoint"], bench)
            if mine is None or theirs is None:
                continue
            paired = mine.select("item_id", "score").join(theirs.select("item_id", pl.col("score").alias("base")),
                                                          on="item_id", how="inner").sort("item_id")
            delta, lo, hi = paired_delta(paired["score"].to_numpy(), paired["base"].to_numpy(), n_boot=n_boot)
            rows.append({"recipe": recipe, "benchmark": bench, "checkpoint": ck["checkpoint"],
                         "baseline_checkpoint": base["checkpoint"], "tokens_seen": ck.get("tokens_seen"),
                         "baseline_tokens_seen": base.get("tokens_seen"),
                         "equal_compute": equal_compute(ck.get("tokens_seen"), base.get("tokens_seen")),
                         "n_items": paired.height, "score": float(paired["score"].mean() or 0.0),
                         "baseline_score": float(paired["base"].mean() or 0.0), "delta": delta,
                         "ci95_low": lo, "ci95_high": hi, "excludes_zero": bool(lo > 0 or hi < 0),
                         "n_boot": n_boot})
    return pl.DataFrame(rows, schema=COMPARISON_SCHEMA)


def format_comparison(table: pl.DataFrame, labels: dict[str, str] | None = None) -> pl.DataFrame:
    """A readable view: `+0.031 [+0.010, +0.052] *` per recipe (rows) and benchmark (columns);
    `*` = the 95 % interval excludes 0; `(unequal compute)` when budgets differ by more than 1 %.
    `labels`: recipe -> the name to show (an oracle's says it reads the planted truth)."""
    if not table.height:
        return table
    if labels:
        table = table.with_columns(pl.col("recipe").replace(labels))
    cells = table.with_columns(pl.struct("delta", "ci95_low", "ci95_high", "excludes_zero", "equal_compute")
                               .map_elements(_cell, return_dtype=pl.String).alias("cell"))
    return cells.pivot(on="benchmark", index="recipe", values="cell").sort("recipe")


def _cell(r: dict) -> str:
    text = f"{r['delta']:+.3f} [{r['ci95_low']:+.3f}, {r['ci95_high']:+.3f}]" + (" *" if r["excludes_zero"] else "")
    return text if r["equal_compute"] else text + " (unequal compute)"
