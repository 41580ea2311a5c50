"""Dagster assets of the `evaluation` stage: checkpoints, eval tables, the leaderboard.

`eval_scores[checkpoint × benchmark]` loads one checkpoint, generates for one benchmark and
releases the model. It declares the concurrency pool `EVAL_POOL`, whose limit comes from
`dagster.yaml` (`concurrency.pools.default_limit`, 2), so at most that many checkpoints are
loaded at the same time however the runs were launched (UI, backfill, sensor, automation).
Its results are content-addressed by checkpoint version × eval set version × prompt, metric
and backend versions: evaluating the same thing again reuses the stored predictions and
generates nothing. The leaderboard follows the eval tables (automation) and compares every
recipe's final checkpoint with baseline's at equal compute, paired on the same eval items.
"""

import base64
import io
import json
import time

import dagster as dg
import polars as pl

from mm_assets import progress
from mm_assets.automation import ON_CHANGED_EVALS
from mm_assets.checkpoints import checkpoint_version, verify_checkpoint
from mm_assets.evaluation.benchmarks import get as get_benchmark
from mm_assets.evaluation.compare import compare_to_baseline, format_comparison
from mm_assets.evaluation.leaderboard import leaderboard_table, plot_scores_by_tokens
from mm_assets.evaluation.runner import EVAL_CODE_VERSION, eval_items, eval_root, eval_version, evaluate, \
    write_result
from mm_assets.metadata import bytes_digest, content_digest, markdown_table
from mm_assets.partitions import benchmark_partitions, checkpoint_benchmark_partitions, checkpoint_partitions
from mm_assets.steps import reads_planted_truth, recipe_label
from mm_assets.taxonomy import BENCHMARKS
from mm_assets.training.assets import first_seed_final
from mm_assets.storage import local_dir, parquet_bytes
from resources.json_io_manager import mapped_pointer
from resources.evaluation import CheckpointStoreResource, EvalBackendResource, MlflowResource
from resources.recipes import RecipesResource
from resources.storage import StorageResource

EVAL_POOL = "eval_checkpoint_load"
BY_CHECKPOINT = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="checkpoint")
BY_BENCHMARK = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="benchmark")
LINEAGE_KEYS = ("training_run", "recipe", "curated_versions", "step", "epoch", "parent", "base_model",
                "base_model_version", "tokens_seen", "budget_tokens", "budget_fraction", "seed", "soup",
                "start_checkpoint")


@dg.asset(group_name="evaluation", partitions_def=checkpoint_partitions, kinds={"safetensors"}, code_version="1",
          description="A complete checkpoint (marker present, every file matches the manifest's sha256), "
                      "registered as a partition; its data version is the hash of its files.")
def checkpoint(context: dg.AssetExecutionContext, checkpoints: CheckpointStoreResource) -> dg.Output[dict]:
    name = context.partition_key
    store = checkpoints.get()
    manifest = verify_checkpoint(store, name)
    version = checkpoint_version(manifest)
    lineage = {k: manifest.get(k) for k in LINEAGE_KEYS}
    return dg.Output(
        {"name": name, "uri": store.uri(name), "version": version, **lineage},
        data_version=dg.DataVersion(version),
        metadata={"uri": store.uri(name), "files": len(manifest["files"]),
                  "lineage": dg.MetadataValue.json(lineage), "model": manifest.get("model", "")},
    )


def _log_mlflow(mlflow_res: MlflowResource, run_name: str, params: dict, metrics: dict, tags: dict,
                predictions_path: str) -> str:
    import mlflow

    with mlflow_res.session() as experiment_id, \
            mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(predictions_path)
    return run.info.run_id


@dg.asset(group_name="evaluation", partitions_def=checkpoint_benchmark_partitions, pool=EVAL_POOL,
          code_version=EVAL_CODE_VERSION, kinds={"pytorch", "parquet", "mlflow"},
          ins={"checkpoint": dg.AssetIn(partition_mapping=BY_CHECKPOINT),
               "eval_sets": dg.AssetIn(partition_mapping=BY_BENCHMARK)},
          description="One checkpoint on one benchmark: per-item predictions (prompt hash, raw output, parsed "
                      "answer, score), the mean with a bootstrap 95% interval, logged to MLflow with lineage tags. "
                      "Content-addressed: the same checkpoint version on the same eval set with the same prompt, "
                      "metric and backend reuses the stored predictions without generating.")
def eval_scores(context: dg.AssetExecutionContext, checkpoint: dict, eval_sets: dict, storage: StorageResource,
                checkpoints: CheckpointStoreResource, eval_backend: EvalBackendResource,
                mlflow: MlflowResource) -> dg.Output[dict]:
    keys = context.partition_key.keys_by_dimension
    name, bench_name = keys["checkpoint"], keys["benchmark"]
    ck, items_ptr = mapped_pointer(checkpoint, name), mapped_pointer(eval_sets, bench_name)
    bench = get_benchmark(bench_name)
    st = storage.get()
    version = eval_version(ck["version"], items_ptr["version"], eval_backend.kind, bench, eval_backend.max_items)
    root = eval_root(bench_name, version)
    record = f"{root}/checkpoints/{name}.json"
    generated, timing = not st.exists(f"{root}/result.json"), {}
    if generated:
        timing = _generate(context, name, ck["version"], items_ptr, bench, st, root, checkpoints, eval_backend)
    else:
        context.log.info(f"{name}/{bench_name}: this checkpoint version was evaluated with the same eval set, prompt, "
                         f"metric and backend; reusing {st.uri(root)} (no generation)")
    predictions, result = st.read_parquet(f"{root}/predictions.parquet"), st.read_json(f"{root}/result.json")
    if st.exists(record):
        summary = st.read_json(record)
    else:       # this checkpoint's own record (name, lineage) and MLflow run, also when reused
        summary = _record_and_log(context, name, ck, items_ptr, bench, st, root, record, result, eval_backend,
                                  mlflow, generated)
    data = parquet_bytes(predictions)
    return dg.Output(
        {"root": root, "summary": record, "version": bytes_digest(data), "score": summary["score"],
         "checkpoint": name},
        data_version=dg.DataVersion(bytes_digest(data)),
        metadata={"uri": st.uri(root), "score": summary["score"], "ci95_low": summary["ci95_low"],
                  "ci95_high": summary["ci95_high"], "n": summary["n"], "metric": bench.metric_name,
                  "sub_scores": dg.MetadataValue.json(summary["sub_scores"]), "model_id": summary["model_id"],
                  "prompt_version": bench.prompt_version, "metric_version": bench.metric_version,
                  "backend": eval_backend.kind, "mlflow_run_id": summary["mlflow_run_id"], "eval_version": version,
                  "reused": not generated, "generated_items": summary["n"] if generated else 0, **timing,
                  "preview": dg.MetadataValue.md(markdown_table(
                      predictions.select("item_id", "raw_output", "parsed", "score").head(5)))},
    )


def _generate(context, name: str, version: str, items_ptr: dict, bench, st, root: str,
              checkpoints: CheckpointStoreResource, eval_backend: EvalBackendResource) -> dict:
    """Load the checkpoint, generate for every item, store the predictions and the result (named
    by the checkpoint's version, not by the directory it was loaded from: a temporary download
    when the store is remote, and a location would give the leaderboard another version wherever
    checkpoints live)."""
    from mm_assets.evaluation.backends import load_backend
    from mm_assets.mixing.soups import model_dir

    items = eval_items(st, items_ptr, eval_backend.max_items)
    with model_dir(checkpoints.get(), name) as path:        # a soup's weights are merged here
        loaded_at = time.time()
        backend = load_backend(eval_backend.kind, path, batch_size=eval_backend.batch_size, device=eval_backend.device)
        try:
            with progress.task(f"{bench.name} {name}", total=items.height, unit="items") as answering:
                predictions = evaluate(backend, bench, items, batch_size=eval_backend.batch_size,
                                       progress=lambda done, n: answering.set(done, n))
        finally:
            backend.close()
            released_at = time.time()
    write_result(st, root, predictions, bench, version, eval_backend.kind, items_ptr["version"])
    return {"loaded_at": loaded_at, "released_at": released_at, "seconds_loaded": released_at - loaded_at}


def _record_and_log(context, name: str, ck: dict, items_ptr: dict, bench, st, root: str, record: str, result: dict,
                    eval_backend: EvalBackendResource, mlflow: MlflowResource, generated: bool) -> dict:
    """The checkpoint's eval record (result + its name and lineage) and its MLflow run."""
    lineage = {k: ck.get(k) for k in LINEAGE_KEYS}
    summary = dict(result, checkpoint=name, checkpoint_version=ck["version"], lineage=lineage)
    with local_dir(st, root) as local:
        summary["mlflow_run_id"] = _log_mlflow(
            mlflow, f"{name}/{bench.name}",
            params={"checkpoint": name, "checkpoint_version": ck["version"], "benchmark": bench.name,
                    "prompt_version": bench.prompt_version, "metric_version": bench.metric_version,
                    "backend": eval_backend.kind, "model_id": result["model_id"], "items": result["n"],
                    "max_new_tokens": result["max_new_tokens"]},
            metrics={"score": result["score"], "ci95_low": result["ci95_low"], "ci95_high": result["ci95_high"],
                     **{f"sub/{k}": v for k, v in result["sub_scores"].items()}},
            tags={"dagster/run_id": context.run_id, "mm/checkpoint": name, "mm/benchmark": bench.name,
                  "mm/checkpoint_version": ck["version"], "mm/generated": str(generated).lower(),
                  **{f"mm/lineage/{k}": json.dumps(v) if not isinstance(v, str) else v
                     for k, v in lineage.items() if v is not None}},
            predictions_path=f"{local}/predictions.parquet")
    summary["tracking_uri"] = mlflow.tracking_uri
    st.write_json(record, summary)
    return summary


@dg.asset(group_name="evaluation", kinds={"parquet"}, automation_condition=ON_CHANGED_EVALS,
          ins={"eval_scores": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(),
                                         metadata={"allow_missing_partitions": True}),
               "training_run": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(),
                                          metadata={"allow_missing_partitions": True})},
          description="Every checkpoint × benchmark in one table, score against training tokens per run, and every "
                      "recipe's final checkpoint against baseline's at equal compute: the paired difference on the "
                      "same eval items with a bootstrap 95% interval, marked when it excludes 0. Refreshed when "
                      "eval tables change.")
def leaderboard(context: dg.AssetExecutionContext, eval_scores: dict, training_run: dict,
                storage: StorageResource, recipes: RecipesResource) -> dg.Output[dict]:
    st = storage.get()
    summaries, roots = [], {}
    for key, pointer in eval_scores.items():
        dims = checkpoint_benchmark_partitions.get_partition_key_from_str(key).keys_by_dimension
        if "summary" not in pointer:
            context.log.warning(f"eval_scores[{key}] was made by an older version; re-materialize it to list it")
            continue
        summaries.append(st.read_json(pointer["summary"]))
        roots[(dims["checkpoint"], dims["benchmark"])] = pointer["root"]
    table = leaderboard_table(summaries)
    # each recipe's first training seed (multi-seed comparisons belong to the ablation report)
    final = {recipe: first_seed_final(run) for recipe, run in sorted(training_run.items()) if run.get("checkpoints")}

    def predictions(ck: str, bench: str):
        root = roots.get((ck, bench))
        return st.read_parquet(f"{root}/predictions.parquet") if root else None

    comparison = compare_to_baseline(final, predictions, list(BENCHMARKS))
    shown = recipes.valid()          # an oracle's row says it reads the planted truth
    labels = {name: recipe_label(r) for name, r in shown.items()}
    oracles = sorted(name for name, r in shown.items() if reads_planted_truth(r))
    png = io.BytesIO()
    plot_scores_by_tokens(table, png)
    data, comparison_data = parquet_bytes(table), parquet_bytes(comparison)
    version = content_digest([bytes_digest(data), bytes_digest(comparison_data)])
    root = f"leaderboard/{version}"
    st.write_bytes(f"{root}/leaderboard.parquet", data)
    st.write_bytes(f"{root}/recipe_comparison.parquet", comparison_data)
    st.write_bytes(f"{root}/score_vs_tokens.png", png.getvalue())
    wide = table.pivot(on="benchmark", index="checkpoint", values="score") if table.height else table
    n_items = sorted(set(comparison["n_items"].to_list())) if comparison.height else []
    return dg.Output(
        {"root": root, "version": version}, data_version=dg.DataVersion(version),
        metadata={"uri": st.uri(root), "rows": table.height,
                  "leaderboard": dg.MetadataValue.md(markdown_table(wide)),
                  "vs_baseline_at_equal_compute": dg.MetadataValue.md(
                      markdown_table(format_comparison(comparison, labels)) +
                      f"\n\nPaired difference to baseline's final checkpoint on the same items (n = {n_items}), "
                      "bootstrap 95% interval over items (2000 resamples); * = the interval excludes 0." +
                      (" A recipe that reads planted truth is an oracle: an upper bound, not a curation method."
                       if oracles else "")),
                  "reads_planted_truth": dg.MetadataValue.json(oracles),
                  "significant": comparison.filter(pl.col("excludes_zero")).height if comparison.height else 0,
                  "final_checkpoints": dg.MetadataValue.json(final),
                  "score_vs_tokens": dg.MetadataValue.md(
                      f"![score vs tokens](data:image/png;base64,{base64.b64encode(png.getvalue()).decode()})")},
    )


__all__ = ["checkpoint", "eval_scores", "leaderboard", "benchmark_partitions"]
