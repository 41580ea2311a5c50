"""Dagster assets of the `evaluation` stage: checkpoints, eval tables, the leaderboard.

`eval_scores[checkpoint × benchmark]` loads one checkpoint, generates for one benchmark and
releases the model. It declares the concurrency pool `EVAL_POOL`, whose limit comes from
`dagster.yaml` (`concurrency.pools.default_limit`, 2), so at most that many checkpoints are
loaded at the same time however the runs were launched (UI, backfill, sensor, automation).
"""

import base64
import io
import json
import time

import dagster as dg
import polars as pl

from mm_assets.checkpoints import checkpoint_version, verify_checkpoint
from mm_assets.evaluation.benchmarks import get as get_benchmark
from mm_assets.evaluation.leaderboard import leaderboard_table, plot_scores_by_step
from mm_assets.evaluation.runner import MAX_NEW_TOKENS, evaluate, summarize
from mm_assets.metadata import bytes_digest, content_digest, markdown_table
from mm_assets.partitions import benchmark_partitions, checkpoint_benchmark_partitions, checkpoint_partitions
from mm_assets.storage import local_dir, parquet_bytes
from resources.json_io_manager import mapped_pointer
from resources.evaluation import CheckpointStoreResource, EvalBackendResource, MlflowResource
from resources.storage import StorageResource

EVAL_POOL = "eval_checkpoint_load"
EVAL_CODE_VERSION = "1"
BY_CHECKPOINT = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="checkpoint")
BY_BENCHMARK = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="benchmark")
LINEAGE_KEYS = ("training_run", "recipe", "curated_versions", "step", "epoch", "parent", "base_model")


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


def _item_frame(st, eval_pointer: dict, max_items: int) -> pl.DataFrame:
    items = st.read_parquet(eval_pointer["root"])
    return items.head(max_items) if max_items else items


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
                      "answer, score), the mean with a bootstrap 95% interval, logged to MLflow with lineage tags.")
def eval_scores(context: dg.AssetExecutionContext, checkpoint: dict, eval_sets: dict, storage: StorageResource,
                checkpoints: CheckpointStoreResource, eval_backend: EvalBackendResource,
                mlflow: MlflowResource) -> dg.Output[dict]:
    from mm_assets.evaluation.backends import load_backend

    keys = context.partition_key.keys_by_dimension
    name, bench_name = keys["checkpoint"], keys["benchmark"]
    ck, items_ptr = mapped_pointer(checkpoint, name), mapped_pointer(eval_sets, bench_name)
    bench = get_benchmark(bench_name)
    st = storage.get()
    items = _item_frame(st, items_ptr, eval_backend.max_items)
    with local_dir(checkpoints.get(), name) as path:
        loaded_at = time.time()
        backend = load_backend(eval_backend.kind, path, batch_size=eval_backend.batch_size, device=eval_backend.device)
        try:
            predictions = evaluate(backend, bench, items, batch_size=eval_backend.batch_size,
                                   progress=lambda done, n: context.log.debug(f"{done}/{n} items"))
            model_id = backend.model_id
        finally:
            backend.close()
            released_at = time.time()
    summary = summarize(predictions, bench)
    data = parquet_bytes(predictions)
    version = content_digest([EVAL_CODE_VERSION, ck["version"], items_ptr["version"], eval_backend.kind,
                              bench.prompt_version, bench.metric_version])
    root = f"eval_scores/{name}/{bench_name}/{version}"
    st.write_bytes(f"{root}/predictions.parquet", data)
    lineage = {k: ck.get(k) for k in LINEAGE_KEYS}
    summary.update(checkpoint=name, checkpoint_version=ck["version"], model_id=model_id, backend=eval_backend.kind,
                   eval_set_version=items_ptr["version"], lineage=lineage,
                   max_new_tokens=MAX_NEW_TOKENS[bench_name])
    st.write_json(f"{root}/summary.json", summary)
    with local_dir(st, root) as local:
        run_id = _log_mlflow(
            mlflow, f"{name}/{bench_name}",
            params={"checkpoint": name, "checkpoint_version": ck["version"], "benchmark": bench_name,
                    "prompt_version": bench.prompt_version, "metric_version": bench.metric_version,
                    "backend": eval_backend.kind, "model_id": model_id, "items": summary["n"],
                    "max_new_tokens": summary["max_new_tokens"]},
            metrics={"score": summary["score"], "ci95_low": summary["ci95_low"], "ci95_high": summary["ci95_high"],
                     **{f"sub/{k}": v for k, v in summary["sub_scores"].items()}},
            tags={"dagster/run_id": context.run_id, "mm/checkpoint": name, "mm/benchmark": bench_name,
                  "mm/checkpoint_version": ck["version"],
                  **{f"mm/lineage/{k}": json.dumps(v) if not isinstance(v, str) else v
                     for k, v in lineage.items() if v is not None}},
            predictions_path=f"{local}/predictions.parquet")
    st.write_json(f"{root}/mlflow.json", {"run_id": run_id, "tracking_uri": mlflow.tracking_uri})
    return dg.Output(
        {"root": root, "version": bytes_digest(data), "score": summary["score"]},
        data_version=dg.DataVersion(bytes_digest(data)),
        metadata={"uri": st.uri(root), "score": summary["score"], "ci95_low": summary["ci95_low"],
                  "ci95_high": summary["ci95_high"], "n": summary["n"], "metric": bench.metric_name,
                  "sub_scores": dg.MetadataValue.json(summary["sub_scores"]), "model_id": model_id,
                  "prompt_version": bench.prompt_version, "metric_version": bench.metric_version,
                  "backend": eval_backend.kind, "mlflow_run_id": run_id,
                  "loaded_at": loaded_at, "released_at": released_at, "seconds_loaded": released_at - loaded_at,
                  "preview": dg.MetadataValue.md(markdown_table(
                      predictions.select("item_id", "raw_output", "parsed", "score").head(5)))},
    )


@dg.asset(group_name="evaluation", kinds={"parquet"},
          ins={"eval_scores": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(),
                                         metadata={"allow_missing_partitions": True})},
          description="Every checkpoint × benchmark in one table, and score against training step per run.")
def leaderboard(context: dg.AssetExecutionContext, eval_scores: dict, storage: StorageResource) -> dg.Output[dict]:
    st = storage.get()
    summaries = [st.read_json(f"{p['root']}/summary.json") for p in eval_scores.values()]
    table = leaderboard_table(summaries)
    png = io.BytesIO()
    plot_scores_by_step(table, png)
    data = parquet_bytes(table)
    version = bytes_digest(data)
    root = f"leaderboard/{version}"
    st.write_bytes(f"{root}/leaderboard.parquet", data)
    st.write_bytes(f"{root}/score_vs_step.png", png.getvalue())
    wide = table.pivot(on="benchmark", index="checkpoint", values="score") if table.height else table
    return dg.Output(
        {"root": root, "version": version}, data_version=dg.DataVersion(version),
        metadata={"uri": st.uri(root), "rows": table.height,
                  "leaderboard": dg.MetadataValue.md(markdown_table(wide)),
                  "score_vs_step": dg.MetadataValue.md(
                      f"![score vs step](data:image/png;base64,{base64.b64encode(png.getvalue()).decode()})")},
    )


__all__ = ["checkpoint", "eval_scores", "leaderboard", "benchmark_partitions"]
