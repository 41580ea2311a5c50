"""Per-subgroup comparisons for targeted synthesis (MM-GEN), no Dagster: did the subgroups a
recipe targeted gain more than the ones it did not?

The scored eval items are placed in the reference split's subgroups (`mmgen_reference`'s
`eval_item_subgroups`: by question type, or by the nearest reference cluster of the question).
Each subgroup is then a panel of `ablation_table`, so every delta is paired on the same items,
resamples items and seeds, and has its interval; the targeted and the untargeted subgroups are
each averaged (equal weight per subgroup) inside their own resamples.
"""

from __future__ import annotations

import polars as pl

from mm_assets.study.statistics import ablation_table


def subgroup_comparisons(scores: pl.DataFrame, item_subgroups: pl.DataFrame, targeted: dict[str, list[str]],
                         baseline: str = "baseline", n_boot: int = 2000, seed: int = 0) -> dict:
    """`scores` as `ablation_table` reads them; `targeted`: recipe -> the subgroups its mmgen step
    generated for. Returns {"rows": per recipe × subgroup, "averages": per recipe × (targeted,
    untargeted)} with baseline's mean, the recipe's, the paired delta and its interval."""
    placed = (scores.with_columns(pl.col("item_id").cast(pl.String))
              .join(item_subgroups.select("benchmark", pl.col("item_id").cast(pl.String), "subgroup"),
                    on=["benchmark", "item_id"], how="inner")
              .filter(pl.col("subgroup").is_not_null()))
    rows, averages = [], []
    for recipe, subs in sorted(targeted.items()):
        part = placed.filter(pl.col("recipe").is_in([baseline, recipe]))
        if part.filter(pl.col("recipe") == recipe).is_empty() or part.filter(pl.col("recipe") == baseline).is_empty():
            continue
        panels = part.with_columns(pl.col("subgroup").alias("benchmark")).drop("subgroup")
        result = ablation_table(panels, baseline=baseline, oracle="", n_boot=n_boot, seed=seed)
        base_mean = {r["benchmark"]: r["mean"] for r in result["rows"] if r["recipe"] == baseline}
        for r in result["rows"]:
            if r["recipe"] == recipe:
                rows.append({"recipe": recipe, "subgroup": r["benchmark"], "targeted": r["benchmark"] in subs,
                             "n_items": r["n_items"], "baseline": base_mean[r["benchmark"]], "mean": r["mean"],
                             "delta": r["delta"], "delta_lo": r["delta_lo"], "delta_hi": r["delta_hi"]})
        present = set(panels["benchmark"].to_list())
        for label, chosen in (("targeted", present & set(subs)), ("untargeted", present - set(subs))):
            if not chosen:
                continue
            res = ablation_table(panels.filter(pl.col("benchmark").is_in(sorted(chosen))), baseline=baseline,
                                 oracle="", n_boot=n_boot, seed=seed)
            avg = next(r for r in res["average"] if r["recipe"] == recipe)
            base = next(r for r in res["average"] if r["recipe"] == baseline)
            averages.append({"recipe": recipe, "subgroups": label, "n_subgroups": len(chosen),
                             "baseline": base["mean"], "mean": avg["mean"], "delta": avg["delta"],
                             "delta_lo": avg["delta_lo"], "delta_hi": avg["delta_hi"]})
    return {"rows": rows, "averages": averages}


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
