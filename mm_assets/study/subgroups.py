"""Per-subgroup comparisons for targeted synthesis (MM-GEN), no Dagster: did the subgroups a
recipe targeted gain more than the ones it did not?

The scored eval items are placed in the reference split's subgroups (`mmgen_reference`'s
`eval_item_subgroups`: by question type, or by the nearest reference cluster of the question).
Each subgroup is then a panel of the study's paired bootstrap (`statistics.resample`), so every
delta is paired on the same items, resamples items and seeds, and has its interval; the targeted
and the untargeted subgroups are each averaged (equal weight per subgroup), and the two averages
compared, all inside one set of resamples.
"""

from __future__ import annotations

import polars as pl

from mm_assets.study.statistics import ablation_table, interval, resample


def _estimate(name: str, point: float, resampled, level: float) -> dict:
    """`name`, its point estimate and the interval of its resampled values."""
    lo, hi = interval(resampled, level)
    return {name: point, f"{name}_lo": lo, f"{name}_hi": hi}


def subgroup_comparisons(scores: pl.DataFrame, item_subgroups: pl.DataFrame, targeted: dict[str, list[str]],
                         baseline: str = "baseline", n_boot: int = 2000, seed: int = 0,
                         level: float = 0.95) -> dict:
    """`scores` as `ablation_table` reads them; `targeted`: recipe -> the subgroups its mmgen step
    generated for. Returns {"rows": per recipe × subgroup, "averages": per recipe × (targeted,
    untargeted)} with baseline's mean, the recipe's, the paired delta and its interval, and
    {"contrast": per recipe, targeted delta − untargeted delta}: whether the targeted subgroups
    gained more. Everything of one recipe comes from one set of resamples (items and seeds), so
    the contrast's interval accounts for the seed draw both averages share."""
    placed = (scores.with_columns(pl.col("item_id").cast(pl.String))
              .join(item_subgroups.select("benchmark", pl.col("item_id").cast(pl.String), "subgroup"),
                    on=["benchmark", "item_id"], how="inner")
              .filter(pl.col("subgroup").is_not_null()))
    rows, averages, contrasts = [], [], []
    for recipe, subs in sorted(targeted.items()):
        part = placed.filter(pl.col("recipe").is_in([baseline, recipe]))
        if part.filter(pl.col("recipe") == recipe).is_empty() or part.filter(pl.col("recipe") == baseline).is_empty():
            continue
        panels = part.with_columns(pl.col("subgroup").alias("benchmark")).drop("subgroup")
        rs = resample(panels, n_boot=n_boot, seed=seed)
        for sub in rs.n_items:
            point, boot = rs.point[sub], rs.boot[sub]
            rows.append({"recipe": recipe, "subgroup": sub, "targeted": sub in subs, "n_items": rs.n_items[sub],
                         "baseline": point[baseline], "mean": point[recipe],
                         **_estimate("delta", point[recipe] - point[baseline], boot[recipe] - boot[baseline], level)})
        chosen = {"targeted": sorted(set(rs.n_items) & set(subs)), "untargeted": sorted(set(rs.n_items) - set(subs))}
        group_delta = {}
        for label, group in chosen.items():
            if not group:
                continue
            (base, base_boot), (mean, mean_boot) = (rs.panel_mean(group, r) for r in (baseline, recipe))
            group_delta[label] = (mean - base, mean_boot - base_boot)
            averages.append({"recipe": recipe, "subgroups": label, "n_subgroups": len(group), "baseline": base,
                             "mean": mean, **_estimate("delta", *group_delta[label], level)})
        if len(group_delta) == 2:
            (t_point, t_boot), (u_point, u_boot) = group_delta["targeted"], group_delta["untargeted"]
            contrasts.append({"recipe": recipe, "compared": "targeted delta - untargeted delta",
                              **_estimate("difference", t_point - u_point, t_boot - u_boot, level)})
    return {"rows": rows, "averages": averages, "contrast": contrasts}


def same_recipe_without(recipes: dict, kind: str = "mmgen") -> dict[str, str]:
    """Recipe -> the recipe that is the same but for its `kind` step (same steps and parameters
    in the same order, same domain weights and training settings): v2 -> v1, mmgen -> baseline.
    What the `kind` step adds is the difference between the two."""
    def key(recipe, drop: bool):
        steps = tuple((k, p.model_dump_json()) for k, p in recipe.steps if not (drop and k == kind))
        return steps, tuple(sorted(recipe.domain_weights.items())), recipe.training.model_dump_json()

    without = {key(r, False): name for name, r in recipes.items() if r.step(kind) is None}
    return {name: without[key(r, True)] for name, r in sorted(recipes.items())
            if r.step(kind) is not None and key(r, True) in without}


def step_effect(scores: pl.DataFrame, with_step: str, without_step: str, n_boot: int = 2000,
                seed: int = 0) -> list[dict]:
    """Per benchmark and on the average: `with_step` − `without_step`, paired on the same items
    and resampling both recipes' seeds, with its interval (v2 − v1 is what MM-GEN adds to v1)."""
    part = scores.filter(pl.col("recipe").is_in([with_step, without_step]))
    if any(part.filter(pl.col("recipe") == r).is_empty() for r in (with_step, without_step)):
        return []
    result = ablation_table(part, baseline=without_step, oracle="", n_boot=n_boot, seed=seed)
    return [{"recipe": with_step, "compared_with": without_step, "benchmark": r["benchmark"], "mean": r["mean"],
             "delta": r["delta"], "delta_lo": r["delta_lo"], "delta_hi": r["delta_hi"]}
            for r in result["rows"] + result["average"] if r["recipe"] == with_step]
