"""Estimators of the ablation report (no Dagster), as in /work/shared/notes/study-statistics.md.

Every interval is a percentile bootstrap that resamples both noise sources, eval items and
training seeds (§2). Items are paired: one draw per benchmark serves every recipe, so item
difficulty cancels in the differences. The average over benchmarks (§3) and gap recovered
(§4) are computed inside the same loop from the same resample, so they get honest intervals.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl

AVERAGE = "average over benchmarks"
GAP_ESTABLISHED = "established"
GAP_NOT_ESTABLISHED = "oracle gap not established"
# the oracle's interval lies below baseline (a metric that credits a broken model, e.g. PixMo's
# credit for not pointing): there is no gap to recover, and a ratio of two losses would read as one
GAP_BELOW_BASELINE = "oracle below baseline"
NO_ORACLE = "no oracle run"
CLEAN = "none"


def interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _normalised(scores: pl.DataFrame) -> pl.DataFrame:
    return scores.with_columns(pl.col("recipe").cast(pl.String), pl.col("seed").cast(pl.Int64),
                               pl.col("benchmark").cast(pl.String), pl.col("item_id").cast(pl.String),
                               pl.col("score").cast(pl.Float64))


def _score_matrices(scores: pl.DataFrame, runs: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    """Per benchmark, a (runs x items) score matrix, items in sorted id order.

    Raises ValueError naming a run whose items differ from those most runs share: a comparison
    over different items would not be paired.
    """
    run_index = pl.DataFrame({"recipe": [r for r, _ in runs], "seed": [s for _, s in runs],
                              "run": range(len(runs))}, schema={"recipe": pl.String, "seed": pl.Int64,
                                                                "run": pl.Int64})
    matrices = {}
    for bench in scores["benchmark"].unique(maintain_order=True).to_list():
        rows = scores.filter(pl.col("benchmark") == bench)
        items_of = {(r, s): tuple(ids) for r, s, ids in rows.group_by("recipe", "seed")
                    .agg(pl.col("item_id").sort()).iter_rows()}
        items = Counter(items_of.values()).most_common(1)[0][0]
        for recipe, seed in runs:
            if items_of.get((recipe, seed), ()) != items:
                raise ValueError(f"recipe {recipe!r} seed {seed} benchmark {bench!r}: items differ from the "
                                 f"{len(items)} items of most runs (missing, extra or repeated)")
        ordered = rows.join(run_index, on=["recipe", "seed"]).sort("run", "item_id")
        matrices[bench] = ordered["score"].to_numpy().reshape(len(runs), len(items))
    return matrices


def _seed_weights(seeds_of: dict[str, list[int]], n_boot: int, paired_seeds: bool,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per recipe, (n_boot x seeds) resampling weights (multinomial counts / seeds), shared by all
    benchmarks since one seed is one training run. Paired: the same seed-index draw for every recipe."""
    def draw(n: int) -> np.ndarray:
        return rng.multinomial(n, np.full(n, 1 / n), size=n_boot) / n

    if not paired_seeds:
        return {recipe: draw(len(seeds)) for recipe, seeds in seeds_of.items()}
    seed_lists = {tuple(seeds) for seeds in seeds_of.values()}
    if len(seed_lists) != 1:
        raise ValueError(f"paired_seeds needs the same seeds for every recipe, got {seeds_of}")
    shared = draw(len(next(iter(seed_lists))))
    return {recipe: shared for recipe in seeds_of}


def _comparisons(point: dict[str, float], boot: dict[str, np.ndarray], baseline: str, oracle: str,
                 level: float) -> dict[str, dict]:
    """Per recipe: delta to baseline and gap recovered, both with intervals from the same resamples.

    Gap recovered is a ratio of two noisy numbers; it is only reported where the oracle gap's own
    interval lies above 0 (§4).
    """
    status, oracle_gap = NO_ORACLE, None
    if oracle in point:
        oracle_gap = boot[oracle] - boot[baseline]
        lo, hi = interval(oracle_gap, level)
        status = GAP_NOT_ESTABLISHED if lo <= 0 <= hi else GAP_BELOW_BASELINE if hi < 0 else GAP_ESTABLISHED
    out = {}
    for recipe in point:
        deltas = boot[recipe] - boot[baseline]
        delta_lo, delta_hi = interval(deltas, level)
        gap = gap_lo = gap_hi = None
        if status == GAP_ESTABLISHED:
            gap = (point[recipe] - point[baseline]) / (point[oracle] - point[baseline])
            if recipe in (baseline, oracle):     # 0 and 1 by definition, in every resample
                gap_lo = gap_hi = gap
            else:
                # a resample where the oracle gap is 0 (possible while its interval excludes 0)
                # has no ratio: 0/0 is left out, d/0 counts as ±inf
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = deltas / oracle_gap
                gap_lo, gap_hi = interval(ratio[~np.isnan(ratio)], level)
        out[recipe] = {"delta": point[recipe] - point[baseline], "delta_lo": delta_lo, "delta_hi": delta_hi,
                       "gap_recovered": gap, "gap_lo": gap_lo, "gap_hi": gap_hi, "gap_status": status}
    return out


@dataclass
class Resampled:
    """Per panel (a benchmark, or the average over benchmarks) and recipe: the point estimate, its
    `n_boot` resampled values (one item draw per benchmark for every recipe, one seed draw per
    recipe for every benchmark) and the per-seed means. Any average or contrast of panels taken
    from these arrays has an honest interval: its terms come from the same resamples."""
    recipes: list[str]
    seeds_of: dict[str, list[int]]
    n_items: dict[str, int]
    point: dict[str, dict[str, float]]
    boot: dict[str, dict[str, np.ndarray]]
    seed_means: dict[str, dict[str, np.ndarray]]

    def panel_mean(self, panels: list[str], recipe: str) -> tuple[float, np.ndarray]:
        """The equal-weight average of `panels` for `recipe`: point estimate and resampled values."""
        return (sum(self.point[p][recipe] for p in panels) / len(panels),
                sum(self.boot[p][recipe] for p in panels) / len(panels))


def resample(scores: pl.DataFrame, n_boot: int = 2000, seed: int = 0, paired_seeds: bool = False) -> Resampled:
    """The paired bootstrap behind every interval of the report (see the module docstring).

    Per benchmark, multinomial item counts C (n_boot x items) are drawn once; each run's resampled
    means are S @ C.T / items, then averaged with the recipe's seed-resampling weights.
    """
    scores = _normalised(scores)
    recipes = scores["recipe"].unique(maintain_order=True).to_list()
    seeds_of = {recipe: sorted(scores.filter(pl.col("recipe") == recipe)["seed"].unique().to_list())
                for recipe in recipes}
    runs = [(recipe, s) for recipe in recipes for s in seeds_of[recipe]]
    matrices = _score_matrices(scores, runs)
    rng = np.random.default_rng(seed)
    weights = _seed_weights(seeds_of, n_boot, paired_seeds, rng)
    first_run = np.cumsum([0] + [len(seeds_of[r]) for r in recipes])
    run_rows = {r: slice(first_run[i], first_run[i + 1]) for i, r in enumerate(recipes)}

    point, boot, seed_means, n_items = {}, {}, {}, {}
    for bench, matrix in matrices.items():
        n_items[bench] = matrix.shape[1]
        counts = rng.multinomial(n_items[bench], np.full(n_items[bench], 1 / n_items[bench]), size=n_boot)
        run_means = matrix @ counts.T / n_items[bench]  # (runs x n_boot), one item draw for every run
        seed_means[bench] = {r: matrix[run_rows[r]].mean(axis=1) for r in recipes}
        point[bench] = {r: float(seed_means[bench][r].mean()) for r in recipes}
        boot[bench] = {r: np.einsum("bs,sb->b", weights[r], run_means[run_rows[r]]) for r in recipes}
    return Resampled(recipes, seeds_of, n_items, point, boot, seed_means)


def ablation_table(scores: pl.DataFrame, baseline: str = "baseline", oracle: str = "oracle", n_boot: int = 2000,
                   seed: int = 0, level: float = 0.95, paired_seeds: bool = False) -> dict:
    """Mean score, delta to baseline and gap recovered per (recipe, benchmark) and per recipe on the
    equal-weight average over benchmarks, each with a paired bootstrap interval (JSON-able)."""
    rs = resample(scores, n_boot, seed, paired_seeds)
    if baseline not in rs.recipes:
        raise ValueError(f"baseline recipe {baseline!r} not among {rs.recipes}")
    recipes, seeds_of, benchmarks = rs.recipes, rs.seeds_of, list(rs.n_items)
    point, boot, seed_means = dict(rs.point), dict(rs.boot), dict(rs.seed_means)

    def averaged(per_bench: dict) -> dict:
        return {r: sum(per_bench[b][r] for b in benchmarks) / len(benchmarks) for r in recipes}

    for per_bench in (point, boot, seed_means):
        per_bench[AVERAGE] = averaged(per_bench)
    items_of_panel = {**rs.n_items, AVERAGE: sum(rs.n_items.values())}

    def panel_rows(panel: str) -> list[dict]:
        compared = _comparisons(point[panel], boot[panel], baseline, oracle, level)
        return [{"recipe": r, "benchmark": panel, "mean": point[panel][r], "seeds": seeds_of[r],
                 "seed_means": seed_means[panel][r].tolist(), "n_items": items_of_panel[panel],
                 "n_seeds": len(seeds_of[r]), **compared[r]} for r in recipes]

    return {"baseline": baseline, "oracle": oracle, "n_boot": n_boot, "level": level, "seed": seed,
            "paired_seeds": paired_seeds, "recipes": recipes, "benchmarks": benchmarks, "n_items": rs.n_items,
            "n_seeds": {r: len(seeds_of[r]) for r in recipes},
            "rows": [row for bench in benchmarks for row in panel_rows(bench)], "average": panel_rows(AVERAGE)}


def ablation_frame(result: dict) -> pl.DataFrame:
    """The ablation table as one frame: per-benchmark rows, then the average rows."""
    return pl.DataFrame(result["rows"] + result["average"], infer_schema_length=None)


def contamination_split(scores: pl.DataFrame, recipe: str = "baseline", n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> list[dict]:
    """Per benchmark, the recipe's mean score on leaked items vs the rest (§7), with a bootstrap
    interval of the difference (each group's items resampled on their own; item score = mean over
    seeds). Decontamination should bring the leaked mean toward the rest. No leaked items: None."""
    if "leaked" not in scores.columns:
        raise ValueError("contamination_split needs a boolean 'leaked' column")
    per_item = (_normalised(scores).filter(pl.col("recipe") == recipe)
                .group_by("benchmark", "item_id", maintain_order=True)
                .agg(pl.col("score").mean(), pl.col("leaked").any()))
    if per_item.is_empty():
        raise ValueError(f"no scores for recipe {recipe!r}")
    rng = np.random.default_rng(seed)
    out = []
    for bench in per_item["benchmark"].unique(maintain_order=True).to_list():
        items = per_item.filter(pl.col("benchmark") == bench)
        leaked = items.filter(pl.col("leaked"))["score"].to_numpy()
        rest = items.filter(~pl.col("leaked"))["score"].to_numpy()
        row = {"benchmark": bench, "recipe": recipe, "n_leaked": leaked.size, "n_rest": rest.size,
               "mean_leaked": float(leaked.mean()) if leaked.size else None,
               "mean_rest": float(rest.mean()) if rest.size else None,
               "difference": None, "difference_lo": None, "difference_hi": None}
        if leaked.size and rest.size:
            resampled = [group[rng.integers(0, group.size, size=(n_boot, group.size))].mean(axis=1)
                         for group in (leaked, rest)]
            row["difference"] = row["mean_leaked"] - row["mean_rest"]
            row["difference_lo"], row["difference_hi"] = interval(resampled[0] - resampled[1], level)
        out.append(row)
    return out


def removal_split(removed: pl.DataFrame, truth_kinds: pl.DataFrame) -> pl.DataFrame:
    """Per curation step and planted defect kind: samples removed, samples planted and recall.

    Samples absent from ``truth_kinds`` (or marked "none") are clean and counted under "none",
    which has no recall. A sample planted with two kinds counts once under each.
    """
    kinds = (truth_kinds.select("sample_id", "defect_kind").filter(pl.col("defect_kind") != CLEAN)
             .drop_nulls().unique())
    planted = kinds.group_by("defect_kind").agg(n_planted=pl.len())
    tagged = (removed.select("step", "sample_id").unique().join(kinds, on="sample_id", how="left")
              .with_columns(pl.col("defect_kind").fill_null(CLEAN)))
    counts = tagged.group_by("step", "defect_kind").agg(n_removed=pl.len())
    kind_order = pl.DataFrame({"defect_kind": sorted(planted["defect_kind"].to_list()) + [CLEAN]},
                              schema={"defect_kind": pl.String}).with_row_index("kind_order")
    steps = removed.select("step").unique(maintain_order=True).with_row_index("step_order")
    return (steps.join(kind_order, how="cross")
            .join(counts, on=["step", "defect_kind"], how="left")
            .join(planted, on="defect_kind", how="left")
            .with_columns(pl.col("n_removed").fill_null(0).cast(pl.Int64), pl.col("n_planted").cast(pl.Int64))
            .with_columns(recall=pl.col("n_removed") / pl.col("n_planted"))
            .sort("step_order", "kind_order").select("step", "defect_kind", "n_removed", "n_planted", "recall"))
