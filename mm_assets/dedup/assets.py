"""Dagster assets of the `dedup` stage: expensive scores once per embedding version, cheap masks.

`semdedup_scores[space]` runs k-means and the pairwise step (the expensive part) once per
embedding version and cluster count. `semdedup_mask[space]` only thresholds the stored scores
for a target removal fraction or an eps, so changing the target re-runs in milliseconds.
"""

import base64
import io
import json
import os
import time

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.dedup.pipeline import decide, planted_groups, score_space
from mm_assets.dedup.report import plot_removal_vs_eps
from mm_assets.dedup.semdedup import KEEP_MODES
from mm_assets.embeddings.assets import load_embeddings
from mm_assets.partitions import domain_to_space, space_partitions
from mm_assets.metadata import bytes_digest, content_digest, markdown_table
from mm_assets.storage import Storage
from resources.data_source import MammothSourceResource
from resources.storage import StorageResource

SCORES_CODE_VERSION = "1"
MASK_CODE_VERSION = "1"
# Clusters of a few hundred samples: large enough that duplicates share a cluster, small
# enough that the pairwise step stays cheap (see shared/notes/semdedup.md §7).
AUTO_CLUSTER_SIZE = 200



class SemDedupScoresConfig(dg.Config):
    n_clusters: int = 0          # 0 = automatic: about one cluster per AUTO_CLUSTER_SIZE samples
    keep: str = "hardest"        # processing order inside a cluster: hardest | easiest | random
    niter: int = 20
    seed: int = 1234


class SemDedupMaskConfig(dg.Config):
    target_removal: float | None = 0.10   # exactly one of target_removal and eps
    eps: float | None = None


def _space_vectors(st: Storage, pointers: dict, space: str):
    ids, domains, vecs = [], [], []
    for domain in sorted(pointers):
        d_ids, modality, v = load_embeddings(st, pointers[domain])
        sel = np.array([m == space for m in modality], dtype=bool)
        ids.extend(np.asarray(d_ids, dtype=object)[sel].tolist())
        domains.extend([domain] * int(sel.sum()))
        vecs.append(v[sel])
    return ids, domains, (np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32))


@dg.asset(group_name="dedup", partitions_def=space_partitions, code_version=SCORES_CODE_VERSION,
          kinds={"faiss", "parquet"},
          ins={"embeddings": dg.AssetIn(partition_mapping=domain_to_space)},
          description="Spherical k-means and the reference SemDeDup score of every sample (max similarity "
                      "to any earlier-ordered member of its cluster), with the earlier member it matched. "
                      "Recipe-independent: computed once per embedding version.")
def semdedup_scores(context: dg.AssetExecutionContext, config: SemDedupScoresConfig, embeddings: dict,
                    storage: StorageResource) -> dg.Output[dict]:
    if config.keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {KEEP_MODES}, got {config.keep!r}")
    space = context.partition_key
    st = storage.get()
    version = content_digest([SCORES_CODE_VERSION, space, config.model_dump(),
                       {d: embeddings[d]["version"] for d in sorted(embeddings)}])
    root = f"semdedup_scores/{space}/{version}"
    reused = st.exists(f"{root}/info.json")
    if reused:
        context.log.info(f"{space}: embeddings and parameters unchanged, reusing {st.uri(root)}")
    else:
        ids, domains, vecs = _space_vectors(st, embeddings, space)
        if not ids:
            raise ValueError(f"no {space} embeddings in domains {sorted(embeddings)}")
        k = config.n_clusters or max(1, round(len(ids) / AUTO_CLUSTER_SIZE))
        table, centroids, info = score_space(vecs, ids, domains, k, config.keep, config.seed, config.niter)
        st.write_parquet(f"{root}/scores.parquet", table)
        buf = io.BytesIO()
        np.save(buf, centroids, allow_pickle=False)
        st.write_bytes(f"{root}/centroids.npy", buf.getvalue())
        st.write_json(f"{root}/info.json", dict(info, domains=sorted(embeddings)))
    info = st.read_json(f"{root}/info.json")
    data_version = bytes_digest(st.read_bytes(f"{root}/scores.parquet"))
    context.log.info(f"{space}: k-means {info['kmeans_seconds']:.2f}s, pairwise {info['pairwise_seconds']:.2f}s"
                     + (" (reused)" if reused else ""))
    return dg.Output(
        {"root": root, "version": data_version},
        data_version=dg.DataVersion(data_version),
        metadata={"uri": st.uri(root), "reused": reused, "n": info["n"], "clusters": info["clusters"],
                  "cluster_size_max": info["cluster_size_max"], "singletons": info["singletons"],
                  "kmeans_seconds": info["kmeans_seconds"], "pairwise_seconds": info["pairwise_seconds"],
                  "keep": info["keep"], "domains": info["domains"]},
    )


def _truth_groups(mammoth: MammothSourceResource, st: Storage, samples: dict) -> list[list[str]] | None:
    if not mammoth.planted_truth or not os.path.exists(mammoth.planted_truth):
        return None
    with open(mammoth.planted_truth) as f:
        truth = json.load(f)
    tables = [st.read_parquet(p["root"]) for p in samples.values()]
    return planted_groups(truth, pl.concat(tables)) if tables else None


@dg.asset(group_name="dedup", partitions_def=space_partitions, code_version=MASK_CODE_VERSION,
          kinds={"parquet"},
          ins={"samples": dg.AssetIn(partition_mapping=domain_to_space)},
          description="The SemDeDup keep mask for a target removal fraction (or an eps): a threshold on "
                      "the stored scores, no k-means or pairwise work. Reports achieved vs target, eps, "
                      "removal per domain, the kept representative of each removed sample.")
def semdedup_mask(context: dg.AssetExecutionContext, config: SemDedupMaskConfig, semdedup_scores: dict,
                  samples: dict, storage: StorageResource, mammoth: MammothSourceResource) -> dg.Output[dict]:
    started = time.perf_counter()
    space = context.partition_key
    st = storage.get()
    scores = st.read_parquet(f"{semdedup_scores['root']}/scores.parquet")
    groups = _truth_groups(mammoth, st, samples)
    mask, report = decide(scores, config.target_removal, config.eps, planted_groups=groups)
    if groups is not None:
        in_space = set(scores["sample_id"].to_list())
        removable = sum(max(0, sum(s in in_space for s in g) - 1) for g in groups)
        _, at_rate = decide(scores, target_removal=removable / scores.height, planted_groups=groups)
        report["at_planted_rate"] = {"target_removal": removable / scores.height, "eps": at_rate["eps"],
                                     **at_rate["vs_planted"]}
    plot = io.BytesIO()
    plot_removal_vs_eps(scores["score"].to_numpy(), plot, target=config.target_removal, chosen_eps=report["eps"])
    version = content_digest([MASK_CODE_VERSION, semdedup_scores["version"], config.model_dump()])
    root = f"semdedup_mask/{space}/{version}"
    st.write_parquet(f"{root}/mask.parquet", mask)
    st.write_bytes(f"{root}/removal_vs_eps.png", plot.getvalue())
    st.write_json(f"{root}/report.json", report)
    data_version = content_digest(sorted(mask.filter(~pl.col("kept"))["sample_id"].to_list()))
    removed = mask.filter(~pl.col("kept")).select("sample_id", "domain", "score", "duplicate_of").head(10)
    if report["semantic_pruning_warning"]:
        context.log.warning(f"{space}: eps {report['eps']:.3f} > 0.15 — this removes semantically similar "
                            "samples, not duplicates")
    seconds = time.perf_counter() - started
    context.log.info(f"{space}: keep mask from stored scores in {seconds:.2f}s — no k-means, no pairwise work")
    metadata = {
        "uri": st.uri(root), "seconds": seconds, "kmeans_or_pairwise_work": False,
        "n": report["n"], "removed": report["removed"], "achieved_removal": report["achieved_removal"],
        "target_removal": config.target_removal, "target_count": report["target_count"],
        "eps": report["eps"], "exact": report["exact"],
        "semantic_pruning_warning": report["semantic_pruning_warning"],
        "removal_per_domain": dg.MetadataValue.json(report["removal_per_domain"]),
        "removed_and_kept_representative": dg.MetadataValue.md(markdown_table(removed)),
        "removal_vs_eps": dg.MetadataValue.md(
            f"![removal vs eps](data:image/png;base64,{base64.b64encode(plot.getvalue()).decode()})"),
    }
    if "vs_planted" in report:
        metadata["precision_vs_planted"] = report["vs_planted"]["precision"]
        metadata["recall_vs_planted"] = report["vs_planted"]["recall"]
        metadata["at_planted_rate"] = dg.MetadataValue.json(report["at_planted_rate"])
    return dg.Output({"root": root, "version": data_version}, data_version=dg.DataVersion(data_version),
                     metadata=metadata)
