"""Perplexity score assets: the trusted pool and the reference model trained on it, NLL scores
once per scorer and domain (the expensive part). The per-recipe decisions (a threshold on the
stored scores) are the step's `decide` in `mm_assets/perplexity/step.py`.
"""

import contextlib
import time
from pathlib import Path

import dagster as dg

from mm_assets import progress
from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.checkpoints import upload_sealed
from mm_assets.embeddings.by_shard import load_embedder_from_pointer, shard_uris
from mm_assets.metadata import content_digest
from mm_assets.partitions import domain_partitions
from mm_assets.perplexity.by_shard import ScorerLocation, ScoreShardTask, concat_shard_scores, score_shard
from mm_assets.perplexity.step import REFERENCE_MODEL
from mm_assets.recipes.assets import section_key
from mm_assets.scratch import scratch_dir
from mm_assets.shard_map import map_shards
from mm_assets.storage import local_path
from resources.data_source import MammothSourceResource
from resources.evaluation import CheckpointStoreResource
from resources.json_io_manager import read_pointers
from resources.ray_cluster import RayClusterResource
from resources.recipes import RecipesResource
from resources.storage import StorageResource

PERPLEXITY_CODE_VERSION = "2"     # 2: scored shard by shard (packing no longer spans shards)
DEFAULT_SCORER = REFERENCE_MODEL


@dg.asset(group_name="curation_steps", code_version=PERPLEXITY_CODE_VERSION, kinds={"webdataset"},
          description="The trusted pool (a small clean set in the source layout) ingested into WebDataset "
                      "shards per domain, with the same validation and quarantine as the main source.")
def trusted_pool(context: dg.AssetExecutionContext, storage: StorageResource,
                 mammoth: MammothSourceResource) -> dg.Output[dict]:
    from mm_assets.sources.ingest import ingest_domain
    from mm_assets.sources.source_scan import SourceSpec, input_fingerprint, scan_sources

    if mammoth.trusted is None:
        raise ValueError("no trusted pool configured (MammothSourceResource.trusted): give one, or score "
                         "perplexity with a checkpoint (`scorer: <checkpoint>` in the recipe)")
    st = storage.get()
    spec = SourceSpec(mammoth.trusted.name, mammoth.trusted.annotations, mammoth.trusted.images)
    root = f"trusted_pool/{input_fingerprint([spec], mammoth.domain_map, mammoth.storage_options)}"
    src = st.child(f"{root}/source")
    manifest = (src.read_json("manifest.json") if src.exists("manifest.json")
                else scan_sources([spec], mammoth.domain_map, src, mammoth.storage_options))
    shards, per_domain, quarantined = [], {}, 0
    for domain in sorted(manifest["domains"]):
        out = st.child(f"{root}/{domain}")
        done = (out.read_json("manifest.json") if out.exists("manifest.json") else
                ingest_domain(src, manifest, domain, out, mammoth.storage_options,
                              samples_per_shard=mammoth.samples_per_shard))
        shards += [{"tar": f"{domain}/{s['tar']}", "sha256": s["sha256"]} for s in done["shards"]]
        per_domain[domain] = done["samples"]
        quarantined += done["quarantined"]
    version = content_digest([s["sha256"] for s in shards])
    st.write_json(f"{root}/manifest.json", {"shards": shards, "per_domain": per_domain})
    return dg.Output({"root": root, "version": version}, data_version=dg.DataVersion(version),
                     metadata={"uri": st.uri(root), "samples": sum(per_domain.values()), "quarantined": quarantined,
                               "samples_per_domain": dg.MetadataValue.json(per_domain),
                               "record_quarantine": manifest["quarantine"]["rows"]})


class ReferenceModelConfig(dg.Config):
    epochs: int = 5
    lr: float = 3e-3
    seed: int = 0


@dg.asset(group_name="curation_steps", code_version=PERPLEXITY_CODE_VERSION, kinds={"pytorch", "safetensors"},
          description="The default perplexity scorer (`tiny`): a tiny LLaVA (the embedder's vision tower, "
                      "frozen) trained on the trusted pool with the project's trainer — DFN-style, a model of "
                      "clean data whose surprise marks what differs from it.")
def reference_model(context: dg.AssetExecutionContext, config: ReferenceModelConfig, trusted_pool: dict,
                    embedder: dict, storage: StorageResource) -> dg.Output[dict]:
    from mm_assets.perplexity import train_reference_model

    st = storage.get()
    version = content_digest([PERPLEXITY_CODE_VERSION, trusted_pool["version"], embedder["version"],
                              config.model_dump()])
    root = f"reference_model/{version}"
    started = time.perf_counter()
    reused = st.exists(f"{root}/model/COMPLETE")
    if not reused:
        pool = st.child(trusted_pool["root"])
        siglip2, _, _ = load_embedder_from_pointer(st, embedder)
        with scratch_dir("mm-ref-") as tmp, contextlib.ExitStack() as stack:
            shards = [str(stack.enter_context(local_path(pool, s["tar"])))
                      for s in pool.read_json("manifest.json")["shards"]]
            with progress.task("reference model training", unit="steps") as training:
                model_dir = train_reference_model(
                    shards, Path(tmp), seed=config.seed, epochs=config.epochs, lr=config.lr, vision_from=siglip2,
                    log_fn=lambda row: training.set(row["step"], row["total_steps"], loss=row["loss"]))
            st.put_local_file(str(Path(tmp) / "training_summary.json"), f"{root}/training_summary.json")
            upload_sealed(model_dir, st.child(f"{root}/model"))
    summary = st.read_json(f"{root}/training_summary.json")
    return dg.Output({"root": f"{root}/model", "version": version}, data_version=dg.DataVersion(version),
                     metadata={"uri": st.uri(root), "reused": reused, "seconds": time.perf_counter() - started,
                               **{k: summary[k] for k in ("samples", "steps", "loss_first", "loss_last")}})


def scorers(recipes: RecipesResource) -> list[str]:
    """The distinct perplexity scorers the valid recipes ask for."""
    names = {r.step("perplexity").scorer for r in recipes.valid().values() if r.step("perplexity") is not None}
    return sorted(names) or [DEFAULT_SCORER]


def scorer_location(scorer: str, st, checkpoints: CheckpointStoreResource) -> ScorerLocation:
    """Where the scorer's model is: the reference model (`tiny`) in artifact storage, a checkpoint
    in the checkpoint store by name (verified against its manifest), or a local directory."""
    if scorer == DEFAULT_SCORER:
        pointer = read_pointers(st, "reference_model")
        return ScorerLocation(st.root, st.storage_options, pointer["root"], pointer["version"])
    store = checkpoints.get()
    if store.exists(f"{scorer}/manifest.json"):
        from mm_assets.checkpoints import checkpoint_version, verify_checkpoint
        manifest = verify_checkpoint(store, scorer)
        return ScorerLocation(store.root, store.storage_options, scorer, checkpoint_version(manifest))
    from mm_assets.rephrase.backends import model_fingerprint
    return ScorerLocation(str(Path(scorer).resolve()), {}, "", model_fingerprint(scorer))   # a LLaVA-format directory


@dg.asset(group_name="curation_steps", partitions_def=domain_partitions, code_version=PERPLEXITY_CODE_VERSION,
          kinds={"pytorch", "parquet"}, automation_condition=ON_CHANGED_DATA,
          deps=["reference_model",
                dg.AssetDep(section_key("perplexity_scoring"), partition_mapping=dg.AllPartitionMapping())],
          description="Mean NLL of every sample's assistant tokens under each scorer the recipes ask for, "
                      "conditioned on the image and the prompt (both masked from the loss); text-only rows "
                      "without an image. Computed once per raw-shard version and scorer.")
def perplexity_scores(context: dg.AssetExecutionContext, raw_shards: dict, storage: StorageResource,
                      recipes: RecipesResource, checkpoints: CheckpointStoreResource,
                      ray_cluster: RayClusterResource) -> dg.Output[dict]:
    domain = context.partition_key
    st = storage.get()
    out, rows = {}, []
    for scorer in scorers(recipes):
        location = scorer_location(scorer, st, checkpoints)
        version = content_digest([PERPLEXITY_CODE_VERSION, raw_shards["version"], location.version])
        root = f"perplexity_scores/{domain}/{version}"
        reused = st.exists(f"{root}/scores.parquet")
        started, computed = time.perf_counter(), 0
        if not reused:
            _, tars = shard_uris(st, raw_shards)
            tasks = [ScoreShardTask(storage_root=st.root, storage_options=st.storage_options,
                                    raw_root=raw_shards["root"], tar=tar, out_root=root, scorer=location,
                                    domain=domain) for tar in tars]
            with progress.task(f"perplexity {domain}", unit="samples") as scoring:
                results = map_shards(score_shard, tasks, shard_names=[t.shard for t in tasks],
                                     ray=ray_cluster.placement(),
                                     on_result=lambda r: scoring.advance(r.record["rows"]))
            computed = sum(r.computed for r in results)
            st.write_parquet(f"{root}/scores.parquet", concat_shard_scores(st.child(root), [r.record for r in results]))
        scores = st.read_parquet(f"{root}/scores.parquet")
        out[scorer] = {"root": root, "version": version}
        rows.append({"scorer": scorer, "samples": scores.height, "unscored": int(scores["nll"].is_null().sum()),
                     "mean_nll": float(scores["nll"].mean() or 0.0), "reused": reused,
                     "shards_computed": computed, "ray": ray_cluster.address or "in process",
                     "seconds": round(time.perf_counter() - started, 2)})
        context.log.info(f"{domain}/{scorer}: {rows[-1]}")
    version = content_digest(out)
    return dg.Output({"scorers": out, "version": version}, data_version=dg.DataVersion(version),
                     metadata={"scorers": dg.MetadataValue.json(rows)})
