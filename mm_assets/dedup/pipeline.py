"""SemDeDup over one embedding space, split into the expensive part and the cheap decision.

`score_space` clusters and scores once per embedding version (k-means + pairwise: the
expensive part). `decide` turns stored scores into a keep mask for a target removal fraction
or an eps (a threshold and a sort: milliseconds), with the report a user needs to trust it.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from mm_assets.dedup.eps import eps_for_target_result, removal_curve
from mm_assets.dedup.kmeans import spherical_kmeans
from mm_assets.dedup.report import precision_recall_vs_groups
from mm_assets.dedup.semdedup import eps_threshold, keep_mask_from_scores, semdedup_scores_with_argmax

# Above this eps (cosine below 0.85) SemDeDup removes semantically similar samples, not duplicates.
SEMANTIC_PRUNING_EPS = 0.15

SCORES_SCHEMA = {"sample_id": pl.String, "domain": pl.String, "cluster": pl.Int64,
                 "score": pl.Float32, "dup_of": pl.String}


def score_space(embeddings: np.ndarray, sample_ids: list[str], domains: list[str], n_clusters: int,
                keep: str = "hardest", seed: int = 1234, niter: int = 20) -> tuple[pl.DataFrame, np.ndarray, dict]:
    """Cluster (spherical k-means) and compute each sample's eps-free SemDeDup score."""
    started = time.perf_counter()
    labels, centroids, info = spherical_kmeans(embeddings, n_clusters, niter=niter, seed=seed)
    kmeans_s = time.perf_counter() - started
    started = time.perf_counter()
    scores, dup_of = semdedup_scores_with_argmax(embeddings, labels, centroids, keep=keep, seed=seed)
    pairwise_s = time.perf_counter() - started
    ids = np.asarray(sample_ids, dtype=object)
    dup_ids = np.where(dup_of >= 0, ids[np.maximum(dup_of, 0)], None)
    table = pl.DataFrame({"sample_id": sample_ids, "domain": domains, "cluster": labels.astype(np.int64),
                          "score": scores.astype(np.float32), "dup_of": dup_ids.tolist()}, schema=SCORES_SCHEMA)
    sizes = np.bincount(labels, minlength=centroids.shape[0])
    info = dict(info, kmeans_seconds=kmeans_s, pairwise_seconds=pairwise_s, n=len(sample_ids),
                clusters=int(centroids.shape[0]), cluster_size_max=int(sizes.max()) if sizes.size else 0,
                cluster_size_mean=float(sizes.mean()) if sizes.size else 0.0,
                singletons=int((sizes == 1).sum()), keep=keep, seed=seed, niter=niter)
    return table, centroids, info


def decide(scores: pl.DataFrame, target_removal: float | None = None, eps: float | None = None,
           planted_groups: list[list[str]] | None = None) -> tuple[pl.DataFrame, dict]:
    """Keep mask from stored scores: exactly one of `target_removal` or `eps`."""
    if (target_removal is None) == (eps is None):
        raise ValueError("give exactly one of target_removal or eps")
    s = scores["score"].to_numpy().astype(np.float32)
    n = len(s)
    result = None
    if target_removal is not None:
        result = eps_for_target_result(s, target_removal)
        eps = result.eps
    kept = keep_mask_from_scores(s, eps)
    mask = scores.select("sample_id", "domain", "cluster", "score", "dup_of").with_columns(
        pl.Series("kept", kept)).with_columns(
        pl.when(pl.col("kept")).then(None).otherwise(pl.col("dup_of")).alias("duplicate_of"))
    removed = int((~kept).sum())
    per_domain = (mask.group_by("domain").agg(pl.len().alias("n"), (~pl.col("kept")).sum().alias("removed"))
                  .sort("domain"))
    report = {
        "n": n, "removed": removed, "achieved_removal": removed / n if n else 0.0,
        "target_removal": target_removal, "eps": float(eps), "threshold": float(eps_threshold(eps)),
        "exact": None if result is None else bool(result.exact),
        "target_count": None if result is None else int(result.target_count),
        "semantic_pruning_warning": float(eps) > SEMANTIC_PRUNING_EPS,
        "removal_per_domain": {d: {"n": int(k), "removed": int(r), "fraction": r / k}
                               for d, k, r in per_domain.iter_rows()},
        "curve": removal_curve(s, [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3]),
    }
    if planted_groups is not None:
        report["vs_planted"] = precision_recall_vs_groups(~kept, mask["sample_id"].to_list(), planted_groups)
    return mask, report


def planted_groups(truth: dict, samples: pl.DataFrame) -> list[list[str]]:
    """The planted near-duplicate groups as sample_id lists (original first), for reports only."""
    key = {(r["source_name"], r["ordinal"]): r["sample_id"]
           for r in samples.select("source_name", "ordinal", "sample_id").iter_rows(named=True)}
    groups = []
    for g in truth.get("near_duplicate_groups", []):
        members = [g["original"]] + list(g["duplicates"])
        ids = [key.get(("main", m["ordinal"])) for m in members]
        ids = [i for i in ids if i is not None]
        if len(ids) >= 2:
            groups.append(ids)
    return groups
