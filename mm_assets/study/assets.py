"""`ablation_report`: did each recipe make the model better than baseline, at equal compute,
over seeds, paired on the same eval items, relative to the oracle's upper bound?

Reads the final checkpoint of every (recipe, seed) run and its per-item eval scores; the
estimators are in `mm_assets.study.statistics`. It also reads the planted truth, for reports
only: which eval items leaked into training (what contamination inflates) and how each step's
removals split over the planted defect kinds.
"""


import base64
import json

import dagster as dg
import polars as pl

from mm_assets.automation import on_changed_evals
from mm_assets.metadata import content_digest, markdown_table
from mm_assets.oracle import planted_defects
from mm_assets.partitions import (
    checkpoint_benchmark_partitions,
    recipe_domain_partitions,
)
from mm_assets.planted import load_truth
from mm_assets.steps import reads_planted_truth, recipe_label
from mm_assets.storage import parquet_bytes
from mm_assets.study.collect import (
    collect_scores,
    complete_runs,
    defect_kinds,
    final_checkpoints,
    mark_leaked,
    removed_by_step,
)
from mm_assets.study.plot import ablation_png
from mm_assets.study.subgroups import same_recipe_without, step_effect, subgroup_comparisons
from mm_assets.study.statistics import (
    ablation_frame,
    ablation_table,
    contamination_split,
    removal_split,
)
from mm_assets.taxonomy import BENCHMARKS
from resources.data_source import MammothSourceResource
from resources.evaluation import MlflowResource
from resources.recipes import RecipesResource
from resources.storage import StorageResource

N_BOOT = 2000
ALL = {"partition_mapping": dg.AllPartitionMapping(), "metadata": {"allow_missing_partitions": True}}


def _fmt(x, lo, hi, scale: float = 100.0) -> str:
    if x is None:
        return "—"
    return f"{scale * x:+.1f} [{scale * lo:+.1f}, {scale * hi:+.1f}]"


def report_tables(result: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Readable views: delta to baseline in points (per benchmark and the average), and gap
    recovered in percent, each `value [low, high]`."""
    frame = ablation_frame(result)
    rows = frame.filter(pl.col("recipe") != result["baseline"])
    delta = rows.with_columns(pl.struct("delta", "delta_lo", "delta_hi").map_elements(
        lambda r: _fmt(r["delta"], r["delta_lo"], r["delta_hi"]), return_dtype=pl.String).alias("cell"))
    gap = rows.with_columns(pl.struct("gap_recovered", "gap_lo", "gap_hi", "gap_status").map_elements(
        lambda r: _fmt(r["gap_recovered"], r["gap_lo"], r["gap_hi"]) if r["gap_recovered"] is not None
        else r["gap_status"], return_dtype=pl.String).alias("cell"))
    order = list(dict.fromkeys(rows["benchmark"].to_list()))

    def wide(df: pl.DataFrame) -> pl.DataFrame:
        return df.pivot(on="benchmark", index="recipe", values="cell").select("recipe", *order)
    return wide(delta), wide(gap)


@dg.asset(group_name="evaluation", kinds={"parquet", "png"},
          automation_condition=on_changed_evals("curated_dataset", "samples"),
          ins={"eval_scores": dg.AssetIn(**ALL), "training_run": dg.AssetIn(**ALL),
               "curated_dataset": dg.AssetIn(**ALL), "samples": dg.AssetIn(**ALL)},
          description="The curation study's answer: per recipe × benchmark, the mean over seeds of the final "
                      "checkpoints (equal token budget), the paired difference to baseline with a 95% bootstrap "
                      "interval over eval items and seeds, gap recovered relative to the oracle, the average over "
                      "benchmarks; baseline's score on leaked eval items vs the rest; each step's removals by "
                      "planted defect kind. Also in MLflow (experiment mm-curation-study).")
def ablation_report(context: dg.AssetExecutionContext, eval_scores: dict, training_run: dict, curated_dataset: dict,
                    samples: dict, storage: StorageResource, recipes: RecipesResource,
                    mammoth: MammothSourceResource, mlflow: MlflowResource) -> dg.Output[dict]:
    st = storage.get()
    roots = {}
    for key, pointer in eval_scores.items():
        dims = checkpoint_benchmark_partitions.get_partition_key_from_str(key).keys_by_dimension
        roots[(dims["checkpoint"], dims["benchmark"])] = pointer["root"]

    def predictions(checkpoint: str, bench: str) -> pl.DataFrame | None:
        root = roots.get((checkpoint, bench))
        return st.read_parquet(f"{root}/predictions.parquet") if root else None

    finals = final_checkpoints(training_run)
    scores, missing = collect_scores(finals, list(BENCHMARKS), predictions)
    scores = complete_runs(scores)
    if missing:
        context.log.warning(f"{len(missing)} evals of final checkpoints do not exist yet; their runs are left out: "
                            f"{sorted({(m['recipe'], m['seed']) for m in missing})}")
    truth = load_truth(mammoth.planted_truth)
    scores = mark_leaked(scores, truth)
    if scores.filter(pl.col("recipe") == "baseline").is_empty():
        # automated on eval tables: the first evals arrive before baseline's are all done
        context.log.info("baseline's final checkpoints are not evaluated on every benchmark yet: no report")
        return dg.Output({"root": None, "version": "waiting"}, data_version=dg.DataVersion("waiting"),
                         metadata={"status": "waiting for baseline's evals", "missing_evals": len(missing)})
    valid = recipes.valid()
    labels = {name: recipe_label(r) for name, r in valid.items()}
    oracle = next((name for name, r in valid.items() if reads_planted_truth(r)), "oracle")
    result = ablation_table(scores, baseline="baseline", oracle=oracle, n_boot=N_BOOT)
    contamination = contamination_split(scores, "baseline", n_boot=N_BOOT) if truth else []

    removals = pl.DataFrame()
    if truth:       # the removal split needs the planted truth: read the ledgers only then
        ledgers = {}
        for key, pointer in curated_dataset.items():
            recipe = recipe_domain_partitions.get_partition_key_from_str(key).keys_by_dimension["recipe"]
            ledger = st.read_parquet(f"{pointer['root']}/ledger.parquet")
            ledgers[recipe] = pl.concat([ledgers[recipe], ledger]) if recipe in ledgers else ledger
        pool = pl.concat([st.read_parquet(p["root"]) for _, p in sorted(samples.items())], how="diagonal_relaxed")
        removals = removal_split(removed_by_step(ledgers), defect_kinds(planted_defects(truth, pool)))

    by_subgroup = _subgroup_report(context, st, valid, result["recipes"], scores)
    mmgen_effect = [row for recipe, base in same_recipe_without(
        {n: valid[n] for n in result["recipes"] if n in valid}).items()
        for row in step_effect(scores, recipe, base, n_boot=N_BOOT)]
    png = ablation_png(result, title=f"Delta to baseline at equal compute ({', '.join(result['benchmarks'])})")
    frame = ablation_frame(result)
    report = {"ablation": result, "contamination": contamination, "missing_evals": missing,
              "removals": removals.to_dicts(), "labels": {r: labels.get(r, r) for r in result["recipes"]},
              "mmgen_subgroups": by_subgroup, "mmgen_effect": mmgen_effect,
              "runs": [f for f in finals if (f["recipe"], f["seed"]) in
                       set(scores.select("recipe", "seed").unique().iter_rows())]}
    blob = json.dumps(report, sort_keys=True, default=str).encode()
    version = content_digest([blob.decode()])
    root = f"ablation_report/{version}"
    st.write_bytes(f"{root}/report.json", blob)
    st.write_bytes(f"{root}/ablation.parquet", parquet_bytes(frame))
    st.write_bytes(f"{root}/scores.parquet", parquet_bytes(scores))
    st.write_bytes(f"{root}/ablation.png", png)
    _log_mlflow(mlflow, context.run_id, result, png, blob)

    delta, gap = report_tables(result)
    means = frame.pivot(on="benchmark", index="recipe", values="mean")
    n_items = sorted(set(result["n_items"].values()))
    seeds = sorted(set(result["n_seeds"].values()))
    note = (f"\n\n{N_BOOT} bootstrap resamples over eval items (paired: one draw for every recipe; {n_items} items "
            f"per benchmark) and seeds ({seeds} per recipe); 95% percentile intervals. Oracle: "
            f"{labels.get(oracle, oracle)}.")
    metadata = {
        "uri": st.uri(root),
        "recipes": dg.MetadataValue.json({r: labels.get(r, r) for r in result["recipes"]}),
        "mean_score": dg.MetadataValue.md(markdown_table(means.with_columns(pl.exclude("recipe").round(3)))),
        "delta_points": dg.MetadataValue.md(markdown_table(delta) + note),
        "gap_recovered_percent": dg.MetadataValue.md(markdown_table(gap) + note),
        "plot": dg.MetadataValue.md(f"![ablation](data:image/png;base64,{base64.b64encode(png).decode()})"),
        "missing_evals": len(missing),
    }
    if contamination:
        metadata["contamination"] = dg.MetadataValue.md(markdown_table(pl.DataFrame(contamination).select(
            "benchmark", "n_leaked", "n_rest", "mean_leaked", "mean_rest", "difference", "difference_lo",
            "difference_hi")))
    if mmgen_effect:        # e.g. v2 - v1: what MM-GEN adds to the recipe it is appended to
        metadata["mmgen_added_to_its_recipe"] = dg.MetadataValue.md(markdown_table(
            pl.DataFrame(mmgen_effect).with_columns(pl.col(pl.Float64).round(3))) + note)
    if by_subgroup["rows"]:
        metadata["mmgen_subgroups"] = dg.MetadataValue.md(markdown_table(
            pl.DataFrame(by_subgroup["rows"]).with_columns(pl.col(pl.Float64).round(3))))
        metadata["mmgen_targeted_vs_untargeted"] = dg.MetadataValue.md(markdown_table(
            pl.DataFrame(by_subgroup["averages"]).with_columns(pl.col(pl.Float64).round(3))) + note)
    if by_subgroup["contrast"]:     # did the targeted subgroups gain more than the untargeted ones?
        metadata["mmgen_targeted_minus_untargeted"] = dg.MetadataValue.md(markdown_table(
            pl.DataFrame(by_subgroup["contrast"]).with_columns(pl.col(pl.Float64).round(3))) + note)
    if removals.height:
        metadata["removals_by_defect_kind"] = dg.MetadataValue.md(markdown_table(
            removals.filter(pl.col("n_removed") > 0).with_columns(pl.col("recall").round(3))))
    return dg.Output({"root": root, "version": version}, data_version=dg.DataVersion(version), metadata=metadata)


def _subgroup_report(context, st, valid: dict, recipes: list[str], scores: pl.DataFrame) -> dict:
    """Per subgroup of the reference splits, for every recipe with an mmgen step: its targeted and
    untargeted subgroups against baseline (`mm_assets.study.subgroups`)."""
    from resources.json_io_manager import read_pointers

    with_mmgen = [name for name in recipes if name in valid and valid[name].step("mmgen") is not None]
    if not with_mmgen:
        return {"rows": [], "averages": [], "contrast": []}
    try:
        reference = read_pointers(st, "mmgen_reference")
        decided = read_pointers(st, "mmgen_decisions", with_mmgen)
    except FileNotFoundError as exc:
        context.log.warning(f"no per-subgroup scores: {exc}")
        return {"rows": [], "averages": [], "contrast": []}
    targeted = {name: json.loads(st.read_bytes(f"{decided[name]['root']}/targets.json")) for name in with_mmgen}
    item_subgroups = st.read_parquet(f"{reference['root']}/eval_item_subgroups.parquet")
    return subgroup_comparisons(scores, item_subgroups, targeted, n_boot=N_BOOT)


def _log_mlflow(mlflow_res: MlflowResource, dagster_run_id: str, result: dict, png: bytes, blob: bytes) -> None:
    """One MLflow run per report: delta, interval and gap recovered per recipe and benchmark."""
    metrics = {}
    for row in result["rows"] + result["average"]:
        bench = "average" if row["benchmark"] == result["average"][0]["benchmark"] else row["benchmark"]
        name = f"{row['recipe']}/{bench}"
        metrics[f"{name}/mean"] = row["mean"]
        if row["recipe"] != result["baseline"]:
            metrics.update({f"{name}/delta": row["delta"], f"{name}/delta_lo": row["delta_lo"],
                            f"{name}/delta_hi": row["delta_hi"]})
        if row.get("gap_recovered") is not None:
            metrics.update({f"{name}/gap_recovered": row["gap_recovered"], f"{name}/gap_lo": row["gap_lo"],
                            f"{name}/gap_hi": row["gap_hi"]})
    mlflow_res.log_report("mm-curation-study", "ablation_report",
                          params={"n_boot": result["n_boot"], "level": result["level"], "baseline": result["baseline"],
                                  "oracle": result["oracle"], "recipes": ",".join(result["recipes"])},
                          metrics=metrics, artifacts={"ablation.png": png, "report.json": blob},
                          tags={"dagster/run_id": dagster_run_id})
