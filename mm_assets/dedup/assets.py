"""Dagster assets of the `dedup` stage: expensive scores once per embedding version, cheap masks.

`semdedup_scores[space]` runs k-means and the pairwise step (the expensive part) once per
embedding version and clustering setting (cluster count, keep order) that some recipe asks
for. `semdedup_mask[recipe]` (the step's decisions, `mm_assets/dedup/step.py`) only thresholds
the stored scores for that recipe's target removal fraction or eps, so changing the target
re-runs in milliseconds.
"""

import io

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.dedup.pipeline import score_space
from mm_assets.dedup.step import clustering_key
from mm_assets.embeddings.assets import load_embeddings
from mm_assets.metadata import bytes_digest, content_digest, markdown_table
from mm_assets.partitions import domain_to_space, space_partitions
from mm_assets.recipes.assets import section_key
from mm_assets.storage import Storage
from resources.recipes import RecipesResource
from resources.storage import StorageResource

SCORES_CODE_VERSION = "1"
# Clusters of a few hundred samples: large enough that duplicates share a cluster, small
# enough that the pairwise step stays cheap (see shared/notes/semdedup.md §7).
AUTO_CLUSTER_SIZE = 200
DEFAULT_CLUSTERING = {"clusters": "auto", "keep": "hardest"}


class SemDedupScoresConfig(dg.Config):
    niter: int = 20
    seed: int = 1234


def _space_vectors(st: Storage, pointers: dict, space: str):
    ids, domains, vecs = [], [], []
    for domain in sorted(pointers):
        d_ids, modality, v = load_embeddings(st, pointers[domain])
        sel = np.array([m == space for m in modality], dtype=bool)
        ids.extend(np.asarray(d_ids, dtype=object)[sel].tolist())
        domains.extend([domain] * int(sel.sum()))
        vecs.append(v[sel])
    return ids, domains, (np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32))


def clustering_settings(recipes: RecipesResource) -> list[dict]:
    """The distinct (clusters, keep) settings of the valid recipes that run SemDeDup."""
    settings = {}
    for recipe in recipes.valid().values():
        step = recipe.step("semdedup")
        if step is not None:
            settings[clustering_key(step.clustering())] = step.clustering()
    return [settings[k] for k in sorted(settings)] or [DEFAULT_CLUSTERING]


@dg.asset(group_name="dedup", partitions_def=space_partitions, code_version=SCORES_CODE_VERSION,
          kinds={"faiss", "parquet"}, automation_condition=ON_CHANGED_DATA,
          ins={"embeddings": dg.AssetIn(partition_mapping=domain_to_space)},
          deps=[dg.AssetDep(section_key("semdedup_clustering"), partition_mapping=dg.AllPartitionMapping())],
          description="Spherical k-means and the reference SemDeDup score of every sample (max similarity "
                      "to any earlier-ordered member of its cluster), with the earlier member it matched. "
                      "Once per embedding version and per clustering setting the recipes ask for.")
def semdedup_scores(context: dg.AssetExecutionContext, config: SemDedupScoresConfig, embeddings: dict,
                    storage: StorageResource, recipes: RecipesResource) -> dg.Output[dict]:
    space = context.partition_key
    st = storage.get()
    vectors = None
    settings, rows = {}, []
    for clustering in clustering_settings(recipes):
        version = content_digest([SCORES_CODE_VERSION, space, clustering, config.model_dump(),
                                  {d: embeddings[d]["version"] for d in sorted(embeddings)}])
        root = f"semdedup_scores/{space}/{version}"
        reused = st.exists(f"{root}/info.json")
        if reused:
            context.log.info(f"{space} {clustering_key(clustering)}: unchanged, reusing {st.uri(root)}")
        else:
            if vectors is None:
                vectors = _space_vectors(st, embeddings, space)
            ids, domains, vecs = vectors
            if not ids:
                raise ValueError(f"no {space} embeddings in domains {sorted(embeddings)}")
            clusters = clustering["clusters"]
            k = max(1, round(len(ids) / AUTO_CLUSTER_SIZE)) if clusters == "auto" else min(int(clusters), len(ids))
            table, centroids, info = score_space(vecs, ids, domains, k, clustering["keep"], config.seed, config.niter)
            st.write_parquet(f"{root}/scores.parquet", table)
            buf = io.BytesIO()
            np.save(buf, centroids, allow_pickle=False)
            st.write_bytes(f"{root}/centroids.npy", buf.getvalue())
            st.write_json(f"{root}/info.json", dict(info, domains=sorted(embeddings), clustering=clustering))
        info = st.read_json(f"{root}/info.json")
        data_version = bytes_digest(st.read_bytes(f"{root}/scores.parquet"))
        settings[clustering_key(clustering)] = {"root": root, "version": data_version}
        context.log.info(f"{space} {clustering_key(clustering)}: k-means {info['kmeans_seconds']:.2f}s, "
                         f"pairwise {info['pairwise_seconds']:.2f}s" + (" (reused)" if reused else ""))
        rows.append({"setting": clustering_key(clustering), "reused": reused, "n": info["n"],
                     "clusters": info["clusters"], "cluster_size_max": info["cluster_size_max"],
                     "singletons": info["singletons"], "kmeans_s": round(info["kmeans_seconds"], 3),
                     "pairwise_s": round(info["pairwise_seconds"], 3)})
    version = content_digest(settings)
    return dg.Output(
        {"settings": settings, "version": version},
        data_version=dg.DataVersion(version),
        metadata={"settings": dg.MetadataValue.md(markdown_table(pl.DataFrame(rows))),
                  "n": rows[0]["n"], "computed": sum(not r["reused"] for r in rows),
                  "kmeans_seconds": sum(r["kmeans_s"] for r in rows if not r["reused"]),
                  "pairwise_seconds": sum(r["pairwise_s"] for r in rows if not r["reused"]),
                  "domains": sorted(embeddings)},
    )
