"""`training_run[recipe]`: train on a recipe's curated datasets, writing sealed checkpoints.

Checkpoints go to the checkpoint store (`MM_CHECKPOINTS`, local or `s3://`) as
`<recipe>-<run id>-e<epoch>-s<step>`; the checkpoint sensor registers each complete one and
requests its evals. The run id is a hash of the curated versions, the base model and the
settings, so re-materializing with the same inputs resumes from the last checkpoint (or reuses
the finished run) instead of starting over.
"""

import contextlib
import json
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.curated.assets import BY_RECIPE
from mm_assets.metadata import content_digest, markdown_table
from mm_assets.partitions import recipe_domain_partitions, recipe_partitions
from mm_assets.storage import local_dir
from resources.evaluation import CheckpointStoreResource, MlflowResource
from resources.storage import StorageResource
from resources.training import TrainingResource

TRAINING_CODE_VERSION = "1"


def _base_model(training: TrainingResource, st, embedder: dict, shard_dirs: list[str], workdir: Path) -> str:
    """The checkpoint training starts from: a path, or the tiny LLaVA built around the embedder's
    vision tower with a tokenizer trained on the curated text."""
    if training.base_model != "tiny":
        return training.base_model
    from mm_assets.embeddings.assets import load_embedder_from_pointer
    from mm_assets.vlm.tiny_llava import build_tiny_llava
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer
    from mm_assets.webdataset_io import read_shard

    texts = []
    for d in shard_dirs:
        for tar in sorted(Path(d).glob("*.tar")):
            with open(tar, "rb") as f:
                for _, fields in read_shard(f):
                    texts += [t["value"] for t in json.loads(fields["json"])["conversations"]]
    siglip2, _, _ = load_embedder_from_pointer(st, embedder)
    out = workdir / "base"
    build_tiny_llava(out, train_bpe_tokenizer(texts), seed=training.seed, vision_from=siglip2)
    return str(out)


@dg.asset(group_name="training", partitions_def=recipe_partitions, code_version=TRAINING_CODE_VERSION,
          kinds={"pytorch", "safetensors"},
          ins={"curated_dataset": dg.AssetIn(partition_mapping=BY_RECIPE), "embedder": dg.AssetIn()},
          description="A LLaVA-style model (frozen SigLIP2 vision tower, projector, language model) trained on "
                      "every curated domain of the recipe; one sealed checkpoint per epoch in the checkpoint store.")
def training_run(context: dg.AssetExecutionContext, curated_dataset: dict, embedder: dict, storage: StorageResource,
                 checkpoints: CheckpointStoreResource, training: TrainingResource,
                 mlflow: MlflowResource) -> dg.Output[dict]:
    from mm_assets.training.trainer import TrainConfig, latest_resumable, train

    recipe = context.partition_key
    st = storage.get()
    curated = {recipe_domain_partitions.get_partition_key_from_str(k).keys_by_dimension["domain"]: v
               for k, v in curated_dataset.items()}
    curated_versions = {d: p["version"] for d, p in sorted(curated.items())}
    settings = training.model_dump()
    run_id = f"{recipe}-{content_digest([TRAINING_CODE_VERSION, curated_versions, settings, embedder['version']])[:8]}"
    store = checkpoints.get()
    cfg = TrainConfig(training_run=run_id, recipe=recipe, curated_versions=curated_versions,
                      model_name=f"tiny-llava ({training.base_model})", epochs=training.epochs, lr=training.lr,
                      schedule=training.schedule, warmup=training.warmup, batch_size=training.batch_size,
                      grad_accum=training.grad_accum, max_len=training.max_len, packing=training.packing,
                      seed=training.seed, save_every_steps=training.save_every_steps or None)
    history: list[dict] = []

    def log(row: dict) -> None:
        history.append(row)
        if row["step"] % 20 == 0:
            context.log.info(f"{run_id} step {row['step']} epoch {row['epoch']}: loss {row['loss']:.4f} "
                             f"lr {row['lr']:.2e} {row['tokens_per_s']:.0f} tok/s")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mm-train-") as tmp, contextlib.ExitStack() as stack:
        shard_dirs = [stack.enter_context(local_dir(st, p["root"])) for _, p in sorted(curated.items())]
        shard_paths = [str(t) for d in shard_dirs for t in sorted(Path(d).glob("*.tar"))]
        resume = latest_resumable(store.uri(""), prefix=f"{run_id}-")
        if resume:
            context.log.info(f"{run_id}: resuming from {resume}")
        base = _base_model(training, st, embedder, shard_dirs, Path(tmp))
        result = train(cfg, base, shard_paths,
                       out_dir_fn=lambda epoch, step: store.uri(f"{run_id}-e{epoch}-s{step}"),
                       log_fn=log, resume_from=resume)
    seconds = time.perf_counter() - started
    names = sorted((n for n in store.list("") if n.startswith(f"{run_id}-") and store.exists(f"{n}/COMPLETE")),
                   key=lambda n: int(n.rsplit("-s", 1)[1]))
    losses = np.array([h["loss"] for h in result.history])
    tenth = max(1, len(losses) // 10)
    summary = {"training_run": run_id, "recipe": recipe, "checkpoints": names, "steps": result.total_steps,
               "samples": result.samples, "skipped": result.skipped,
               "loss_first_10pct": float(losses[:tenth].mean()), "loss_last_10pct": float(losses[-tenth:].mean()),
               "tokens_per_s": float(np.mean([h["tokens_per_s"] for h in history])) if history else None,
               "seconds": seconds, "resumed_from": str(resume) if resume else None,
               "curated_versions": curated_versions, "settings": settings}
    _log_training_mlflow(mlflow, context.run_id, summary, result.history, history)
    version = content_digest([run_id, names])
    st.write_json(f"training_runs/{run_id}/summary.json", summary)
    return dg.Output(
        {"root": f"training_runs/{run_id}", "version": version, "training_run": run_id, "checkpoints": names},
        data_version=dg.DataVersion(version),
        metadata={"training_run": run_id, "checkpoints": dg.MetadataValue.json(names), "steps": result.total_steps,
                  "samples": result.samples, "loss_first_10pct": summary["loss_first_10pct"],
                  "loss_last_10pct": summary["loss_last_10pct"], "tokens_per_s": summary["tokens_per_s"],
                  "seconds": seconds, "curated_versions": dg.MetadataValue.json(curated_versions),
                  "loss_curve": dg.MetadataValue.md(markdown_table(pl.DataFrame(
                      [{"step": h["step"], "epoch": h["epoch"], "loss": round(h["loss"], 4)}
                       for h in result.history[:: max(1, len(result.history) // 12)]])))},
    )


def _log_training_mlflow(mlflow_res: MlflowResource, dagster_run_id: str, summary: dict, curve: list[dict],
                         this_call: list[dict]) -> None:
    """One MLflow run per materialization: the whole loss curve (a resumed run includes the steps
    before its resume point, restored from the checkpoint), throughput of the steps it ran."""
    import mlflow

    with mlflow_res.session("mm-curation-training") as experiment_id, \
            mlflow.start_run(experiment_id=experiment_id, run_name=summary["training_run"],
                             tags={"dagster/run_id": dagster_run_id, "mm/recipe": summary["recipe"],
                                   "mm/training_run": summary["training_run"],
                                   "mm/resumed_from": summary["resumed_from"] or "",
                                   "mm/lineage/curated_versions": json.dumps(summary["curated_versions"])}):
        mlflow.log_params({k: v for k, v in summary["settings"].items()})
        for h in curve:
            mlflow.log_metrics({"loss": h["loss"], "lr": h["lr"]}, step=h["step"])
        for h in this_call:
            mlflow.log_metrics({"tokens_per_s": h["tokens_per_s"]}, step=h["step"])
        mlflow.log_metrics({"loss_first_10pct": summary["loss_first_10pct"],
                            "loss_last_10pct": summary["loss_last_10pct"]})
