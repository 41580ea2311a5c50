"""Dagster assets of the `embeddings` stage: the embedder checkpoint and per-domain embeddings."""

import contextlib
import time
from pathlib import Path

import dagster as dg
import numpy as np

from mm_assets import progress
from mm_assets.embeddings.by_shard import (EmbedShardTask, QuestionChunkTask, embed_question_chunk,  # noqa: F401
                                           embed_shard, load_embedder_from_pointer, question_chunks, shard_uris)
from mm_assets.metadata import bytes_digest, content_digest
from mm_assets.partitions import domain_partitions
from mm_assets.scratch import scratch_dir
from mm_assets.shard_map import map_shards
from mm_assets.storage import Storage, local_path
from resources.models import EmbedderResource
from resources.ray_cluster import RayClusterResource
from resources.storage import StorageResource

EMBEDDER_CODE_VERSION = "1"
EMBEDDINGS_CODE_VERSION = "1"


@dg.asset(group_name="embeddings", code_version=EMBEDDER_CODE_VERSION, kinds={"pytorch", "safetensors"},
          ins={"raw_shards": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
          description="The SigLIP2 embedder: a real checkpoint by path/id, or (default) a tiny SigLIP2 "
                      "built locally and trained with the sigmoid image-text loss on the sample pool.")
def embedder(context: dg.AssetExecutionContext, raw_shards: dict, storage: StorageResource,
             embedder_model: EmbedderResource) -> dg.Output[dict]:
    st = storage.get()
    if not embedder_model.is_tiny:
        from mm_assets.rephrase.backends import model_fingerprint

        # a local directory by its files (the same model copied to another home has the same
        # version, and new weights at the same path another); a hub id as given
        version = content_digest([EMBEDDER_CODE_VERSION, model_fingerprint(embedder_model.model)])
        return dg.Output({"root": None, "model": embedder_model.model, "version": version},
                         data_version=dg.DataVersion(version),
                         metadata={"model": embedder_model.model, "trained": False})
    from mm_assets.embeddings.train import train_tiny_siglip2, training_pairs

    params = {"steps": embedder_model.train_steps, "batch_size": embedder_model.train_batch_size,
              "seed": embedder_model.seed}
    inputs = {d: raw_shards[d]["version"] for d in sorted(raw_shards)}
    version = content_digest([EMBEDDER_CODE_VERSION, params, inputs])
    root = f"embedder/{version}"
    if not st.exists(f"{root}/COMPLETE"):
        with contextlib.ExitStack() as stack:
            shards = []
            for d in sorted(raw_shards):
                raw, rels = shard_uris(st, raw_shards[d])
                shards.extend(stack.enter_context(local_path(raw, r)) for r in rels)
            pairs = training_pairs(shards)
        with scratch_dir("mm-embedder-") as tmp, \
                progress.task("training", total=params["steps"], unit="steps") as training:
            result = train_tiny_siglip2(pairs, out_dir=tmp, log=context.log.info, **params,
                                        on_step=lambda _, loss: training.advance(loss=loss["total"]))
            for p in sorted(Path(tmp).rglob("*")):
                if p.is_file():
                    st.put_local_file(str(p), f"{root}/{p.relative_to(tmp)}")
        st.write_json(f"{root}/training.json", {k: result[k] for k in (
            "seconds", "loss_first", "loss_last", "steps", "images", "texts", "config", "spec")})
        st.write_json(f"{root}/COMPLETE", {"inputs": inputs, "params": params})
    report = st.read_json(f"{root}/training.json")
    weights = bytes_digest(st.read_bytes(f"{root}/model.safetensors"))
    return dg.Output(
        {"root": root, "model": "tiny-siglip2", "version": weights},
        data_version=dg.DataVersion(weights),
        metadata={"model": f"{embedder_model.model} (SigLIP2, built and trained here)", "uri": st.uri(root),
                  "trained": True, "training_seconds": report["seconds"],
                  "loss_first": report["loss_first"], "loss_last": report["loss_last"],
                  "steps": report["steps"], "training_images": report["images"],
                  "training_texts": report["texts"], "domains": sorted(raw_shards)},
    )


@dg.asset(group_name="embeddings", partitions_def=domain_partitions, code_version=EMBEDDINGS_CODE_VERSION,
          kinds={"numpy"},
          description="L2-normalised SigLIP2 embeddings per sample: image rows by the vision tower, "
                      "text-only rows by the text tower; .npy shards aligned with sample_id.")
def embeddings(context: dg.AssetExecutionContext, raw_shards: dict, embedder: dict,
               storage: StorageResource, embedder_model: EmbedderResource,
               ray_cluster: RayClusterResource) -> dg.Output[dict]:
    domain = context.partition_key
    st = storage.get()
    version = content_digest([EMBEDDINGS_CODE_VERSION, raw_shards["version"], embedder["version"]])
    root = f"embeddings/{domain}/{version}"
    started = time.perf_counter()
    reused = st.exists(f"{root}/manifest.json")
    computed = 0
    if not reused:
        raw, tars = shard_uris(st, raw_shards)
        placement = ray_cluster.placement()
        # on Ray a task's torch threads are its CPU slots less its decode threads (in process: all cores less them)
        threads = None if placement is None else max(1, int(placement.num_cpus) - embedder_model.decode_workers)
        tasks = [EmbedShardTask(storage_root=st.root, storage_options=st.storage_options, raw_root=raw_shards["root"],
                                tar=tar, out_root=root, embedder=embedder, batch_size=embedder_model.batch_size,
                                decode_workers=embedder_model.decode_workers, torch_threads=threads) for tar in tars]
        with progress.task(domain, unit="samples") as embedded:
            results = map_shards(embed_shard, tasks, shard_names=[t.shard for t in tasks], ray=placement,
                                 on_result=lambda r: embedded.advance(r.record["rows"]))
        computed = sum(r.computed for r in results)
        parts = [r.record for r in results]
        st.write_json(f"{root}/manifest.json", {"domain": domain, "parts": parts,
                                                "dim": parts[0]["dim"] if parts else 0,
                                                "embedder": embedder, "raw_shards": raw_shards})
    manifest = st.read_json(f"{root}/manifest.json")
    seconds = time.perf_counter() - started
    rows = sum(p["rows"] for p in manifest["parts"])
    data_version = content_digest([[p["npy_sha256"], p["ids_sha256"]] for p in manifest["parts"]])
    return dg.Output(
        {"root": root, "version": data_version},
        data_version=dg.DataVersion(data_version),
        metadata={"uri": st.uri(root), "reused": reused, "rows": rows, "dim": manifest["dim"],
                  "shards": len(manifest["parts"]), "shards_computed": computed,
                  "shards_reused": len(manifest["parts"]) - computed,
                  "ray": ray_cluster.address or "in process", "seconds": seconds,
                  "samples_per_second": rows / seconds if seconds > 0 and computed else None},
    )


def load_embeddings(st: Storage, pointer: dict) -> tuple[list[str], list[str], np.ndarray]:
    """(sample_ids, modality, vectors) of one domain's `embeddings` asset value."""
    root = st.child(pointer["root"])
    manifest = root.read_json("manifest.json")
    ids, modality, vecs = [], [], []
    for p in manifest["parts"]:
        table = root.read_parquet(p["ids"])
        with root.open_read(p["npy"]) as f:
            v = np.load(f, allow_pickle=False)
        if v.shape[0] != table.height:
            raise ValueError(f"{root.uri(p['npy'])}: {v.shape[0]} vectors for {table.height} ids")
        ids.extend(table["sample_id"].to_list())
        modality.extend(table["modality"].to_list())
        vecs.append(v)
    dim = manifest["dim"]
    return ids, modality, (np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32))


@dg.asset(group_name="embeddings", partitions_def=domain_partitions, code_version=EMBEDDINGS_CODE_VERSION,
          kinds={"numpy"},
          description="L2-normalised text-tower embeddings of each sample's first question alone (<image> "
                      "removed): what relevance compares with the image, and what mining compares with eval "
                      "questions.")
def question_embeddings(context: dg.AssetExecutionContext, samples: dict, embedder: dict,
                        storage: StorageResource, embedder_model: EmbedderResource,
                        ray_cluster: RayClusterResource) -> dg.Output[dict]:
    import pyarrow.parquet as pq

    from mm_assets.embeddings.store import write_embeddings_manifest

    domain = context.partition_key
    st = storage.get()
    version = content_digest([EMBEDDINGS_CODE_VERSION, "questions", samples["version"], embedder["version"]])
    root = f"question_embeddings/{domain}/{version}"
    reused = st.exists(f"{root}/questions.json")
    started, computed = time.perf_counter(), 0
    if not reused:
        with st.open_read(samples["root"]) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        placement = ray_cluster.placement()
        tasks = [QuestionChunkTask(storage_root=st.root, storage_options=st.storage_options, samples=samples["root"],
                                   start=lo, stop=hi, index=k, out_root=root, embedder=embedder,
                                   batch_size=embedder_model.batch_size,
                                   torch_threads=None if placement is None else max(1, int(placement.num_cpus)))
                 for k, (lo, hi) in enumerate(question_chunks(rows))]
        results = map_shards(embed_question_chunk, tasks, shard_names=[t.shard for t in tasks], ray=placement)
        computed = sum(r.computed for r in results)
        write_embeddings_manifest(st.child(root), [r.record for r in results], prefix="questions")
    manifest = st.read_json(f"{root}/questions.json")
    data_version = content_digest([[s["npy_sha256"], s["ids_sha256"]] for s in manifest["shards"]])
    return dg.Output({"root": root, "version": data_version}, data_version=dg.DataVersion(data_version),
                     metadata={"uri": st.uri(root), "reused": reused, "rows": manifest["rows"],
                               "dim": manifest["dim"], "shards": len(manifest["shards"]), "shards_computed": computed,
                               "ray": ray_cluster.address or "in process", "seconds": time.perf_counter() - started})


def load_question_embeddings(st: Storage, pointer: dict) -> tuple[list[str], np.ndarray]:
    from mm_assets.embeddings.store import read_embeddings
    return read_embeddings(st.child(pointer["root"]), prefix="questions")
