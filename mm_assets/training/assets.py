"""`base_model` and `training_run[recipe]`: every recipe trains from the same base model to
the same token budget, writing sealed checkpoints at fixed fractions of that budget.

Each training seed (`seeds`: the training resource's, or the recipe's `training: {seeds: [...]}`)
is one training run from the same base model to the same budget; the seed fixes the data order
and the torch RNG. Checkpoints go to the checkpoint store (`MM_CHECKPOINTS`, local or `s3://`)
as `<run id>-e<epoch>-s<step>`, the run id being `<recipe>-seed<seed>-<digest>`; the checkpoint
sensor registers each complete one and requests its evals. The digest is a hash of the curated
versions, the base model's version, the budget, the settings and the seed, so re-materializing
with the same inputs resumes each run from its last checkpoint (or reuses the finished run)
instead of starting over. `training_run` follows its curated datasets by data version
(automation), unless the recipe says `training: {auto: false}`.
"""

import contextlib
import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from mm_assets import progress
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

TRAINING_CODE_VERSION = "3"
BASE_MODEL_CODE_VERSION = "2"
AUTOMATION_TAG = "dagster/from_automation_condition"


def _corpus_texts(st: Storage, raw_shards: dict) -> list[str]:
    """Every conversation turn of the ingested pool: what the tiny model's tokenizer learns."""
    from mm_assets.embeddings.inference import iter_shard_samples

    texts = []
    for domain in sorted(raw_shards):
        raw = st.child(raw_shards[domain]["root"])
        tars = [s["tar"] for s in raw.read_json("manifest.json")["shards"]]
        for _, meta, _ in iter_shard_samples(raw.open_each(tars)):
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
                      "tiny default (LLaVA around the embedder's SigLIP2 tower, pre-trained densely on drawn "
                      "grounding scenes and frozen, tokenizer trained on the ingested text, seeded init), or an "
                      "outside LLaVA checkpoint (MM_TRAIN_BASE_MODEL), fingerprinted, not copied.")
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
                             embedder["version"], training.seed, training.image_size,
                             {"tower_scenes": training.tower_scenes, "tower_epochs": training.tower_epochs}])
    model = st.child(f"base_model/{inputs}/model")
    report_path = f"base_model/{inputs}/tower_pretraining.json"
    tower_report: dict = {}
    reused = model.exists("COMPLETE")
    if not reused:
        from mm_assets.embeddings.assets import load_embedder_from_pointer
        from mm_assets.vlm.tiny_llava import build_tiny_llava
        from mm_assets.vlm.tokenizer import train_bpe_tokenizer
        from mm_assets.vlm.tower_pretraining import pretrain_tower

        def pretrain(tower):
            if training.tower_scenes:
                tower_report.update(pretrain_tower(
                    tower, training.tower_scenes, training.tower_epochs, seed=training.seed,
                    image_size=training.image_size, log=lambda row: context.log.info(f"tower pre-training: {row}")))
                st.write_json(report_path, tower_report)

        siglip2, _, _ = load_embedder_from_pointer(st, embedder)
        with scratch_dir("mm-base-") as tmp:
            build_tiny_llava(tmp, train_bpe_tokenizer(_corpus_texts(st, raw_shards)), seed=training.seed,
                             image_size=training.image_size, vision_from=siglip2, prepare_tower=pretrain)
            seal_local_checkpoint(tmp, {"model": "tiny-llava (random init)", "training_run": None, "recipe": None,
                                        "curated_versions": None, "step": 0, "epoch": 0, "parent": None,
                                        "tokens_seen": 0, "seed": training.seed, "built_from": inputs,
                                        "tower_scenes": training.tower_scenes, "tower_epochs": training.tower_epochs})
            upload_sealed(tmp, model)
    manifest = verify_checkpoint(st, f"base_model/{inputs}/model")
    version = checkpoint_version(manifest)
    if reused and training.tower_scenes and st.exists(report_path):
        tower_report = st.read_json(report_path)
    metadata = {"uri": model.uri(""), "version": version, "reused": reused, "files": len(manifest["files"]),
                "seconds": time.perf_counter() - started,
                "tower_pretraining": f"{training.tower_scenes} scenes x {training.tower_epochs} epochs"
                if training.tower_scenes else "none (the embedder's tower as it is)"}
    if tower_report:
        metadata["tower_held_out_class_accuracy"] = tower_report["curve"][-1]["held_out_class_accuracy"]
        metadata["tower_pretraining_seconds"] = tower_report["seconds"]
    return dg.Output({"uri": model.uri(""), "root": f"base_model/{inputs}/model", "version": version, "kind": "tiny"},
                     data_version=dg.DataVersion(version), metadata=metadata)


@contextlib.contextmanager
def base_model_dir(st: Storage, pointer: dict):
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
                      "for every recipe unless it says otherwise), one run per training seed; sealed checkpoints "
                      "at fixed fractions of the budget in the checkpoint store. Follows its curated datasets "
                      "automatically unless the recipe says `training: {auto: false}`.")
def training_run(context: dg.AssetExecutionContext, curated_dataset: dict, base_model: dict, storage: StorageResource,
                 checkpoints: CheckpointStoreResource, training: TrainingResource, mlflow: MlflowResource,
                 recipes: RecipesResource):
    from mm_assets.training.trainer import TrainConfig, encode_shards

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
    seeds = recipe.training.seeds or training.seeds
    settings = dict(training.model_dump(), budget_tokens=budget, seeds=seeds)
    # what decides the weights (not which budget fractions get a checkpoint written, nor which
    # other seeds are trained); the run's own seed is added per run
    trajectory = {k: v for k, v in settings.items() if k not in ("checkpoint_fractions", "seeds")}
    store = checkpoints.get()
    started = time.perf_counter()
    runs, curves = [], []
    with contextlib.ExitStack() as stack:
        shard_dirs = [stack.enter_context(local_dir(st, p["root"])) for _, p in sorted(curated.items())]
        shard_paths = [str(t) for d in shard_dirs for t in sorted(Path(d).glob("*.tar"))]
        base_dir = stack.enter_context(base_model_dir(st, base_model))
        encoded: list = []

        def dataset():
            """Every seed trains on the same shards with the base model's processor: encoded once,
            and only if some seed has steps left (at the study's scale encoding takes minutes)."""
            if not encoded:
                t = time.perf_counter()
                encoded.append(encode_shards(base_dir, shard_paths, training.max_len))
                context.log.info(f"{recipe_name}: {len(encoded[0][0])} samples encoded in "
                                 f"{time.perf_counter() - t:.0f} s")
            return encoded[0]

        for seed in seeds:
            digest = content_digest([TRAINING_CODE_VERSION, curated_versions, trajectory, base_model["version"], seed])
            run_id = f"{recipe_name}-seed{seed}-{digest[:8]}"
            cfg = TrainConfig(training_run=run_id, recipe=recipe_name, curated_versions=curated_versions,
                              model_name=f"tiny-llava ({training.base_model})", budget_tokens=budget,
                              checkpoint_fractions=tuple(training.checkpoint_fractions), save_each_epoch=False,
                              seed=seed, **training.optimisation(),
                              base_model_version=base_model["version"], base_model_uri=base_model["uri"])
            summary, curve = (finished_run(st, store, run_id)
                              or train_one_seed(context, cfg, settings, store, base_dir, shard_paths, dataset()))
            log_training_mlflow(mlflow, context.run_id, summary, curve)
            st.write_json(f"training_runs/{run_id}/summary.json", summary)
            runs.append(summary)
            curves.append(curve)
    seconds = time.perf_counter() - started
    out_runs = [{"seed": r["seed"], "training_run": r["training_run"], "checkpoints": r["checkpoints"],
                 "final": r["checkpoints"][-1], "tokens_seen": r["tokens_seen"], "steps": r["steps"],
                 "epochs_seen": r["epochs_seen"], "root": f"training_runs/{r['training_run']}"} for r in runs]
    # what this materialization did (metadata only: the stored value is the same however it got there)
    runs_done = [{**o, "resumed_from": r["resumed_from"], "steps_this_call": len(c["this_call"])}
                 for o, r, c in zip(out_runs, runs, curves)]
    names = [n for r in runs for n in r["checkpoints"]]
    first = runs[0]
    version = content_digest([[r["training_run"] for r in runs], names])
    sampled = [h["step"] for h in curves[0]["history"][:: max(1, len(curves[0]["history"]) // 12)]]
    losses = [{h["step"]: round(h["loss"], 4) for h in c["history"]} for c in curves]
    yield dg.Output(
        {"root": out_runs[0]["root"], "version": version, "training_run": first["training_run"], "checkpoints": names,
         "budget_tokens": budget, "tokens_seen": first["tokens_seen"], "runs": out_runs},
        data_version=dg.DataVersion(version),
        # single figures are the first seed's run (as before seeds), `seconds` the whole materialization
        metadata={"training_run": first["training_run"], "checkpoints": dg.MetadataValue.json(names),
                  "seeds": dg.MetadataValue.json(seeds), "runs": dg.MetadataValue.json(runs_done),
                  "runs_table": dg.MetadataValue.md(markdown_table(pl.DataFrame(
                      [{"seed": r["seed"], "training_run": r["training_run"], "tokens_seen": r["tokens_seen"],
                        "steps": r["steps"], "epochs_seen": round(r["epochs_seen"], 3),
                        "loss_first_10pct": round(r["loss_first_10pct"], 4),
                        "loss_last_10pct": round(r["loss_last_10pct"], 4)} for r in runs]))),
                  "steps": first["steps"], "samples": first["samples"], "budget_tokens": budget,
                  "tokens_seen": first["tokens_seen"], "epochs_seen": round(first["epochs_seen"], 3),
                  "loss_first_10pct": first["loss_first_10pct"], "loss_last_10pct": first["loss_last_10pct"],
                  "tokens_per_s": first["tokens_per_s"], "seconds": seconds,
                  "base_model_version": base_model["version"],
                  "curated_versions": dg.MetadataValue.json(curated_versions),
                  "loss_curve": dg.MetadataValue.md(markdown_table(pl.DataFrame(
                      [{"step": step, **{f"seed {r['seed']}": loss.get(step) for r, loss in zip(runs, losses)}}
                       for step in sampled])))},
    )


def first_seed_final(run: dict) -> dict:
    """The first seed's run of a `training_run` output or materialization metadata: its final
    checkpoint and tokens. Comparisons across recipes use this one run; comparisons over seeds
    belong to the ablation report. An output stored before seeds has one run, its last checkpoint."""
    if "runs" in run:
        return {"checkpoint": run["runs"][0]["final"], "tokens_seen": run["runs"][0]["tokens_seen"]}
    return {"checkpoint": run["checkpoints"][-1], "tokens_seen": run.get("tokens_seen")}


def finished_run(st: Storage, store: Storage, run_id: str) -> tuple[dict, dict] | None:
    """A run trained to its end before, as :func:`train_one_seed` would return it when resuming
    from its final checkpoint, without encoding the data again: its stored summary and the loss
    history of its final checkpoint. None unless the summary and every checkpoint it names are
    there, complete, and the last one has no steps left."""
    from mm_assets.checkpoints import MARKER
    from mm_assets.training.trainer import TRAINER_STATE

    path = f"training_runs/{run_id}/summary.json"
    if not st.exists(path):
        return None
    summary = st.read_json(path)
    names = summary.get("checkpoints") or []
    if (summary.get("training_run") != run_id or not names or not all(store.exists(f"{n}/{MARKER}") for n in names)
            or not store.exists(f"{names[-1]}/{TRAINER_STATE}")):
        return None
    state = json.loads(store.read_bytes(f"{names[-1]}/{TRAINER_STATE}"))
    if state["global_step"] < state["total_steps"]:
        return None
    summary.update(resumed_from=store.uri(names[-1]), tokens_per_s=None, seconds=0.0)
    return summary, {"history": state["history"], "this_call": []}


def train_one_seed(context: dg.AssetExecutionContext, cfg, settings: dict, store: Storage, base_dir: str,
               shard_paths: list[str], dataset) -> tuple[dict, dict]:
    """One seed's training run, resumed from its own latest checkpoint if there is one: its
    summary and loss curves (`history`: every step, resumed ones included; `this_call`: the
    steps run now, with their throughput)."""
    from mm_assets.training.trainer import latest_resumable, train

    run_id = cfg.training_run
    this_call: list[dict] = []

    def log(row: dict) -> None:
        this_call.append(row)
        training.set(row["step"], row["total_steps"], loss=row["loss"])
        if row["step"] % 20 == 0:
            context.log.info(f"{run_id} step {row['step']}/{row['total_steps']} epoch {row['epoch']}: loss "
                             f"{row['loss']:.4f} lr {row['lr']:.2e} {row['tokens_per_s']:.0f} tok/s")

    started = time.perf_counter()
    resume = latest_resumable(store.uri(""), prefix=f"{run_id}-", storage_options=store.storage_options)
    if resume:
        context.log.info(f"{run_id}: resuming from {resume}")
    with progress.task(f"{cfg.recipe} seed {cfg.seed}", unit="steps") as training:
        result = train(cfg, base_dir, shard_paths, log_fn=log, resume_from=resume, dataset=dataset,
                       out_dir_fn=lambda epoch, step: store.uri(f"{run_id}-e{epoch}-s{step}"),
                       storage_options=store.storage_options)
    names = sorted((n for n in store.list("") if n.startswith(f"{run_id}-") and store.exists(f"{n}/COMPLETE")),
                   key=lambda n: int(n.rsplit("-s", 1)[1]))
    losses = np.array([h["loss"] for h in result.history])
    tenth = max(1, len(losses) // 10)
    tokens = int(sum(h["tokens"] for h in result.history))
    summary = {"training_run": run_id, "recipe": cfg.recipe, "seed": cfg.seed, "checkpoints": names,
               "steps": result.total_steps, "samples": result.samples, "skipped": result.skipped,
               "budget_tokens": cfg.budget_tokens, "tokens_seen": tokens,
               "epochs_seen": tokens / max(1, result.tokens_per_epoch),
               "loss_first_10pct": float(losses[:tenth].mean()), "loss_last_10pct": float(losses[-tenth:].mean()),
               "tokens_per_s": float(np.mean([h["tokens_per_s"] for h in this_call])) if this_call else None,
               "seconds": time.perf_counter() - started, "resumed_from": str(resume) if resume else None,
               "curated_versions": cfg.curated_versions,
               "base_model": {"version": cfg.base_model_version, "uri": cfg.base_model_uri}, "settings": settings}
    return summary, {"history": result.history, "this_call": this_call}


def log_training_mlflow(mlflow_res: MlflowResource, dagster_run_id: str, summary: dict, curves: dict) -> None:
    """One MLflow run per seed and materialization: the whole loss curve (a resumed run includes
    the steps before its resume point, restored from the checkpoint), throughput of the steps it ran."""
    import mlflow

    with mlflow_res.session("mm-curation-training") as experiment_id, \
            mlflow.start_run(experiment_id=experiment_id, run_name=summary["training_run"],
                             tags={"dagster/run_id": dagster_run_id, "mm/recipe": summary["recipe"],
                                   "mm/training_run": summary["training_run"], "mm/seed": str(summary["seed"]),
                                   "mm/resumed_from": summary["resumed_from"] or "",
                                   "mm/lineage/base_model": summary["base_model"]["version"],
                                   "mm/lineage/curated_versions": json.dumps(summary["curated_versions"])}):
        mlflow.log_params(dict(summary["settings"], training_seed=summary["seed"]))
        for h in curves["history"]:
            mlflow.log_metrics({"loss": h["loss"], "lr": h["lr"]}, step=h["step"])
        for h in curves["this_call"]:
            mlflow.log_metrics({"tokens_per_s": h["tokens_per_s"]}, step=h["step"])
        mlflow.log_metrics({"loss_first_10pct": summary["loss_first_10pct"],
                            "loss_last_10pct": summary["loss_last_10pct"], "tokens_seen": summary["tokens_seen"]})
