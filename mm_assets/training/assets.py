"""`base_model` and `training_run[recipe]`: every recipe trains from the same base model to
the same token budget, writing sealed checkpoints at fixed fractions of that budget.

Checkpoints go to the checkpoint store (`MM_CHECKPOINTS`, local or `s3://`) as
`<recipe>-<run id>-e<epoch>-s<step>`; the checkpoint sensor registers each complete one and
requests its evals. The run id is a hash of the curated versions, the base model's version,
the budget and the settings, so re-materializing with the same inputs resumes from the last
checkpoint (or reuses the finished run) instead of starting over. `training_run` follows its
curated datasets by data version (automation), unless the recipe says `training: {auto: false}`.
"""

import contextlib
import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.checkpoints import MANIFEST, checkpoint_version, seal_local_checkpoint, upload_sealed, \
    verify_checkpoint
from mm_assets.curated.assets import BY_RECIPE
from mm_assets.metadata import content_digest, markdown_table
from mm_assets.partitions import recipe_domain_partitions, recipe_partitions
from mm_assets.recipes.assets import section_key
from mm_assets.scratch import scratch_dir
from mm_assets.storage import Storage, local_dir
from resources.evaluation import CheckpointStoreResource, MlflowResource
from resources.recipes import RecipesResource
from resources.storage import StorageResource
from resources.training import TrainingResource

TRAINING_CODE_VERSION = "2"
BASE_MODEL_CODE_VERSION = "1"
AUTOMATION_TAG = "dagster/from_automation_condition"


def _corpus_texts(st: Storage, raw_shards: dict) -> list[str]:
    """Every conversation turn of the ingested pool: what the tiny model's tokenizer learns."""
    from mm_assets.embeddings.inference import iter_shard_samples

    texts = []
    for domain in sorted(raw_shards):
        raw = st.child(raw_shards[domain]["root"])
        tars = [raw.uri(s["tar"]) for s in raw.read_json("manifest.json")["shards"]]
        for _, meta, _ in iter_shard_samples(tars):
            texts += [t["value"] for t in meta["conversations"]]
    return texts


def _fingerprint(path: str, storage_options: dict) -> dict[str, str]:
    """sha256 of every file of an outside checkpoint directory (local or URI)."""
    import hashlib

    if "://" not in path and not Path(path).is_dir():
        raise FileNotFoundError(f"base model {path!r} is not a directory (MM_TRAIN_BASE_MODEL must name a LLaVA "
                                "checkpoint directory)")
    src = Storage(path, storage_options)
    files = {}
    for rel in src.walk_files(""):
        h = hashlib.sha256()
        with src.open_read(rel) as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        files[rel] = h.hexdigest()
    if not files:
        raise FileNotFoundError(f"base model {path!r}: no files (MM_TRAIN_BASE_MODEL must name a LLaVA checkpoint)")
    return files


@dg.asset(group_name="training", code_version=BASE_MODEL_CODE_VERSION, kinds={"pytorch", "safetensors"},
          automation_condition=ON_CHANGED_DATA,
          ins={"raw_shards": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()), "embedder": dg.AssetIn()},
          description="The model every recipe's training starts from, identified by the hash of its files: the "
                      "tiny default (LLaVA around the embedder's frozen SigLIP2 tower, tokenizer trained on the "
                      "ingested text, seeded init), or an outside LLaVA checkpoint (MM_TRAIN_BASE_MODEL), "
                      "fingerprinted, not copied.")
def base_model(context: dg.AssetExecutionContext, raw_shards: dict, embedder: dict, storage: StorageResource,
               training: TrainingResource) -> dg.Output[dict]:
    st = storage.get()
    started = time.perf_counter()
    if training.base_model != "tiny":
        files = _fingerprint(training.base_model, st.storage_options)
        version = checkpoint_version({"files": files})
        root = f"base_model/{version}"
        st.write_json(f"{root}/{MANIFEST}", {"source": training.base_model, "files": files})
        return dg.Output({"uri": training.base_model, "root": root, "version": version, "kind": "outside"},
                         data_version=dg.DataVersion(version),
                         metadata={"uri": training.base_model, "version": version, "files": len(files),
                                   "seconds": time.perf_counter() - started})
    inputs = content_digest([BASE_MODEL_CODE_VERSION, {d: p["version"] for d, p in sorted(raw_shards.items())},
                             embedder["version"], training.seed])
    model = st.child(f"base_model/{inputs}/model")
    reused = model.exists("COMPLETE")
    if not reused:
        from mm_assets.embeddings.assets import load_embedder_from_pointer
        from mm_assets.vlm.tiny_llava import build_tiny_llava
        from mm_assets.vlm.tokenizer import train_bpe_tokenizer

        siglip2, _, _ = load_embedder_from_pointer(st, embedder)
        with scratch_dir("mm-base-") as tmp:
            build_tiny_llava(tmp, train_bpe_tokenizer(_corpus_texts(st, raw_shards)), seed=training.seed,
                             vision_from=siglip2)
            seal_local_checkpoint(tmp, {"model": "tiny-llava (random init)", "training_run": None, "recipe": None,
                                        "curated_versions": None, "step": 0, "epoch": 0, "parent": None,
                                        "tokens_seen": 0, "seed": training.seed, "built_from": inputs})
            upload_sealed(tmp, model)
    manifest = verify_checkpoint(st, f"base_model/{inputs}/model")
    version = checkpoint_version(manifest)
    return dg.Output({"uri": model.uri(""), "root": f"base_model/{inputs}/model", "version": version, "kind": "tiny"},
                     data_version=dg.DataVersion(version),
                     metadata={"uri": model.uri(""), "version": version, "reused": reused, "files": len(manifest["files"]),
                               "seconds": time.perf_counter() - started})


@contextlib.contextmanager
def _base_model_dir(st: Storage, pointer: dict):
    """A local directory holding the base model (downloaded when it is not local)."""
    if pointer["kind"] == "tiny":
        with local_dir(st, pointer["root"]) as d:
            yield d
        return
    if "://" not in pointer["uri"]:
        yield pointer["uri"]
        return
    parent, _, name = pointer["uri"].rstrip("/").rpartition("/")
    with local_dir(Storage(parent, st.storage_options), name) as d:
        yield d


@dg.asset(group_name="training", partitions_def=recipe_partitions, code_version=TRAINING_CODE_VERSION,
          kinds={"pytorch", "safetensors"}, automation_condition=ON_CHANGED_DATA, output_required=False,
          ins={"curated_dataset": dg.AssetIn(partition_mapping=BY_RECIPE), "base_model": dg.AssetIn()},
          deps=[section_key("training")],
          description="A LLaVA-style model (frozen SigLIP2 vision tower, projector, language model) trained from the "
                      "base model on every curated domain of the recipe, to the recipe's token budget (the same "
                      "for every recipe unless it says otherwise); sealed checkpoints at fixed fractions of the "
                      "budget in the checkpoint store. Follows its curated datasets automatically unless the "
                      "recipe says `training: {auto: false}`.")
def training_run(context: dg.AssetExecutionContext, curated_dataset: dict, base_model: dict, storage: StorageResource,
                 checkpoints: CheckpointStoreResource, training: TrainingResource, mlflow: MlflowResource,
                 recipes: RecipesResource):
    from mm_assets.training.trainer import TrainConfig, latest_resumable, train

    recipe_name = context.partition_key
    recipe = recipes.get(recipe_name)
    if not recipe.training.auto and context.run.tags.get(AUTOMATION_TAG) == "true":
        context.log.info(f"recipe {recipe_name} says training: {{auto: false}}: not retraining automatically "
                         f"(materialize training_run[{recipe_name}] by hand to train)")
        return
    st = storage.get()
    curated = {recipe_domain_partitions.get_partition_key_from_str(k).keys_by_dimension["domain"]: v
               for k, v in curated_dataset.items()}
    curated_versions = {d: p["version"] for d, p in sorted(curated.items())}
    budget = recipe.training.budget_tokens or training.budget_tokens
    settings = dict(training.model_dump(), budget_tokens=budget)
    # what decides the weights (not which budget fractions get a checkpoint written)
    trajectory = {k: v for k, v in settings.items() if k != "checkpoint_fractions"}
    run_id = f"{recipe_name}-{content_digest([TRAINING_CODE_VERSION, curated_versions, trajectory, base_model['version']])[:8]}"
    store = checkpoints.get()
    cfg = TrainConfig(training_run=run_id, recipe=recipe_name, curated_versions=curated_versions,
                      model_name=f"tiny-llava ({training.base_model})", budget_tokens=budget,
                      checkpoint_fractions=tuple(training.checkpoint_fractions), save_each_epoch=False,
                      lr=training.lr, schedule=training.schedule, warmup=training.warmup,
                      batch_size=training.batch_size, grad_accum=training.grad_accum, max_len=training.max_len,
                      packing=training.packing, seed=training.seed, base_model_version=base_model["version"],
                      base_model_uri=base_model["uri"])
    history: list[dict] = []

    def log(row: dict) -> None:
        history.append(row)
        if row["step"] % 20 == 0:
            context.log.info(f"{run_id} step {row['step']}/{row['total_steps']} epoch {row['epoch']}: loss "
                             f"{row['loss']:.4f} lr {row['lr']:.2e} {row['tokens_per_s']:.0f} tok/s")

    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        shard_dirs = [stack.enter_context(local_dir(st, p["root"])) for _, p in sorted(curated.items())]
        shard_paths = [str(t) for d in shard_dirs for t in sorted(Path(d).glob("*.tar"))]
        resume = latest_resumable(store.uri(""), prefix=f"{run_id}-")
        if resume:
            context.log.info(f"{run_id}: resuming from {resume}")
        base_dir = stack.enter_context(_base_model_dir(st, base_model))
        result = train(cfg, base_dir, shard_paths,
                       out_dir_fn=lambda epoch, step: store.uri(f"{run_id}-e{epoch}-s{step}"),
                       log_fn=log, resume_from=resume)
    seconds = time.perf_counter() - started
    names = sorted((n for n in store.list("") if n.startswith(f"{run_id}-") and store.exists(f"{n}/COMPLETE")),
                   key=lambda n: int(n.rsplit("-s", 1)[1]))
    losses = np.array([h["loss"] for h in result.history])
    tenth = max(1, len(losses) // 10)
    tokens = int(sum(h["tokens"] for h in result.history))
    summary = {"training_run": run_id, "recipe": recipe_name, "checkpoints": names, "steps": result.total_steps,
               "samples": result.samples, "skipped": result.skipped, "budget_tokens": budget, "tokens_seen": tokens,
               "epochs_seen": tokens / max(1, result.tokens_per_epoch),
               "loss_first_10pct": float(losses[:tenth].mean()), "loss_last_10pct": float(losses[-tenth:].mean()),
               "tokens_per_s": float(np.mean([h["tokens_per_s"] for h in history])) if history else None,
               "seconds": seconds, "resumed_from": str(resume) if resume else None,
               "curated_versions": curated_versions, "base_model": {"version": base_model["version"],
                                                                     "uri": base_model["uri"]},
               "settings": settings}
    _log_training_mlflow(mlflow, context.run_id, summary, result.history, history)
    version = content_digest([run_id, names])
    st.write_json(f"training_runs/{run_id}/summary.json", summary)
    yield dg.Output(
        {"root": f"training_runs/{run_id}", "version": version, "training_run": run_id, "checkpoints": names,
         "budget_tokens": budget, "tokens_seen": tokens},
        data_version=dg.DataVersion(version),
        metadata={"training_run": run_id, "checkpoints": dg.MetadataValue.json(names), "steps": result.total_steps,
                  "samples": result.samples, "budget_tokens": budget, "tokens_seen": tokens,
                  "epochs_seen": round(summary["epochs_seen"], 3),
                  "loss_first_10pct": summary["loss_first_10pct"], "loss_last_10pct": summary["loss_last_10pct"],
                  "tokens_per_s": summary["tokens_per_s"], "seconds": seconds,
                  "base_model_version": base_model["version"],
                  "curated_versions": dg.MetadataValue.json(curated_versions),
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
                                   "mm/lineage/base_model": summary["base_model"]["version"],
                                   "mm/lineage/curated_versions": json.dumps(summary["curated_versions"])}):
        mlflow.log_params({k: v for k, v in summary["settings"].items()})
        for h in curve:
            mlflow.log_metrics({"loss": h["loss"], "lr": h["lr"]}, step=h["step"])
        for h in this_call:
            mlflow.log_metrics({"tokens_per_s": h["tokens_per_s"]}, step=h["step"])
        mlflow.log_metrics({"loss_first_10pct": summary["loss_first_10pct"],
                            "loss_last_10pct": summary["loss_last_10pct"], "tokens_seen": summary["tokens_seen"]})
