"""Dagster assets of the `dedup` stage: expensive scores once per embedding version, cheap masks.

`semdedup_scores[space]` runs k-means and the pairwise step (the expensive part) once per
embedding version and clustering setting (cluster count, keep order) that some recipe asks
for. `semdedup_mask[recipe]` only thresholds the stored scores for that recipe's target
removal fraction or eps, so changing the target re-runs in milliseconds.
"""

import base64
import io
import time

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.dedup.pipeline import decide, planted_groups, score_space
from mm_assets.dedup.report import plot_removal_vs_eps
from mm_assets.embeddings.assets import load_embeddings
from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.partitions import domain_to_space, recipe_partitions, space_partitions
from mm_assets.recipes.assets import section_key
from mm_assets.recipes.schema import SemDedupStep
from mm_assets.recipes.sections import step_params_hash
from mm_assets.metadata import bytes_digest, content_digest, markdown_table
from mm_assets.storage import Storage
from mm_assets.curated.step_outputs import decisions_metadata, pool_samples
from mm_assets.planted import load_truth
from resources.canaries import CanariesResource
from resources.data_source import MammothSourceResource
from resources.recipes import RecipesResource
from resources.storage import StorageResource

SCORES_CODE_VERSION = "1"
MASK_CODE_VERSION = "2"
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


def clustering_key(clustering: dict) -> str:
    return f"clusters={clustering['clusters']},keep={clustering['keep']}"


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


def _truth_groups(mammoth: MammothSourceResource, pool: pl.DataFrame) -> list[list[str]] | None:
    truth = load_truth(mammoth.planted_truth)
    return planted_groups(truth, pool) if truth is not None else None


def _decide_space(scores: pl.DataFrame, step: SemDedupStep, groups) -> tuple[pl.DataFrame, dict]:
    if groups is not None:
        in_space = set(scores["sample_id"].to_list())
        groups = [g for g in groups if sum(s in in_space for s in g) >= 2]
    mask, report = decide(scores, step.target_removal, step.eps, planted_groups=groups)
    if groups is not None:
        in_space = set(scores["sample_id"].to_list())
        removable = sum(max(0, sum(s in in_space for s in g) - 1) for g in groups)
        _, at_rate = decide(scores, target_removal=removable / scores.height, planted_groups=groups)
        report["at_planted_rate"] = {"target_removal": removable / scores.height, "eps": at_rate["eps"],
                                     **at_rate["vs_planted"]}
    threshold = report["threshold"]
    decisions = mask.select(
        "sample_id", "domain", pl.col("score").cast(pl.Float64),
        pl.when(pl.col("kept")).then(pl.lit("keep")).otherwise(pl.lit("drop")).alias("decision"),
        pl.when(pl.col("kept"))
        .then(pl.format("max similarity to an earlier cluster member ≤ {}", pl.lit(f"{threshold:.6f}")))
        .otherwise(pl.format("near-duplicate: similarity {} > {} to kept-or-earlier member",
                             pl.col("score").round(6), pl.lit(f"{threshold:.6f}"))).alias("reason"),
        pl.col("duplicate_of").alias("related_id"))
    return decisions, report


@dg.asset(group_name="dedup", partitions_def=recipe_partitions, code_version=MASK_CODE_VERSION,
          kinds={"parquet"}, automation_condition=ON_CHANGED_DATA,
          ins={"semdedup_scores": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
               "samples": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
          deps=[section_key("semdedup_threshold"), section_key("semdedup_clustering")],
          description="A recipe's SemDeDup decisions: a threshold on the stored scores for its target "
                      "removal fraction (or eps) in each embedding space — no k-means, no pairwise work. "
                      "Reports achieved vs target, eps, removal per domain, kept representatives.")
def semdedup_mask(context: dg.AssetExecutionContext, semdedup_scores: dict, samples: dict,
                  storage: StorageResource, mammoth: MammothSourceResource,
                  recipes: RecipesResource, canaries: CanariesResource) -> dg.Output[dict]:
    started = time.perf_counter()
    name = context.partition_key
    recipe = recipes.get(name)
    step = recipe.step("semdedup")
    st = storage.get()
    if step is None:
        context.log.info(f"recipe {name} has no semdedup step: nothing to decide")
        return dg.Output({"root": None, "version": "not-in-recipe", "in_recipe": False},
                         data_version=dg.DataVersion("not-in-recipe"),
                         metadata={"in_recipe": False, "kmeans_or_pairwise_work": False})
    setting = clustering_key(step.clustering())
    pool = pool_samples(st, samples)
    groups = _truth_groups(mammoth, pool)
    parts, reports, plots = {}, {}, {}
    for space in sorted(semdedup_scores):
        pointer = semdedup_scores[space]["settings"].get(setting)
        if pointer is None:
            raise ValueError(f"semdedup_scores[{space}] holds no scores for {setting} (recipe {name}); "
                             "re-materialize semdedup_scores so it reads the current recipes")
        scores = st.read_parquet(f"{pointer['root']}/scores.parquet")
        parts[space], reports[space] = _decide_space(scores, step, groups)
        plot = io.BytesIO()
        plot_removal_vs_eps(scores["score"].to_numpy(), plot, target=step.target_removal,
                            chosen_eps=reports[space]["eps"])
        plots[space] = plot.getvalue()
    decisions = pl.concat(list(parts.values())).sort("sample_id")
    params_hash = step_params_hash("semdedup", step)
    # The data version is the decisions themselves: a threshold edit that drops the same samples
    # changes nothing downstream.
    data_version = content_digest(decisions.select("sample_id", "decision", "related_id").rows())
    root = f"semdedup_mask/{name}/{content_digest([MASK_CODE_VERSION, params_hash, data_version])}"
    st.write_parquet(f"{root}/decisions.parquet", decisions.with_columns(pl.lit(params_hash).alias("params_hash")))
    st.write_json(f"{root}/report.json", {"params": step.model_dump(mode="json"), "setting": setting,
                                          "params_hash": params_hash, "spaces": reports})
    for space, png in plots.items():
        st.write_bytes(f"{root}/removal_vs_eps_{space}.png", png)
    seconds = time.perf_counter() - started
    context.log.info(f"{name}: keep masks from stored scores in {seconds:.2f}s — no k-means, no pairwise work")
    metadata = {"uri": st.uri(root), "seconds": seconds, "kmeans_or_pairwise_work": False, "in_recipe": True,
                "params": dg.MetadataValue.json(step.model_dump(mode="json")), "params_hash": params_hash,
                **decisions_metadata(decisions, canaries.ids(pool, mammoth.planted_truth))}
    for space, report in reports.items():
        if report["semantic_pruning_warning"]:
            context.log.warning(f"{name}/{space}: eps {report['eps']:.3f} > 0.15 — this removes semantically "
                                "similar samples, not duplicates")
        removed = (parts[space].filter(pl.col("decision") == "drop")
                   .select("sample_id", "domain", "score", "related_id").head(10))
        metadata.update({
            f"{space}/n": report["n"], f"{space}/removed": report["removed"],
            f"{space}/achieved_removal": report["achieved_removal"],
            f"{space}/target_removal": step.target_removal, f"{space}/target_count": report["target_count"],
            f"{space}/eps": report["eps"], f"{space}/exact": report["exact"],
            f"{space}/semantic_pruning_warning": report["semantic_pruning_warning"],
            f"{space}/removal_per_domain": dg.MetadataValue.json(report["removal_per_domain"]),
            f"{space}/removed_and_kept_representative": dg.MetadataValue.md(markdown_table(removed)),
            f"{space}/removal_vs_eps": dg.MetadataValue.md(
                f"![removal vs eps](data:image/png;base64,{base64.b64encode(plots[space]).decode()})"),
        })
        if "vs_planted" in report:
            metadata[f"{space}/precision_vs_planted"] = report["vs_planted"]["precision"]
            metadata[f"{space}/recall_vs_planted"] = report["vs_planted"]["recall"]
            metadata[f"{space}/at_planted_rate"] = dg.MetadataValue.json(report["at_planted_rate"])
    return dg.Output({"root": root, "version": data_version, "in_recipe": True},
                     data_version=dg.DataVersion(data_version), metadata=metadata)
