"""Relevance assets: scores once per embedding version (per domain), flags per recipe."""

import time

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.curated.step_outputs import decisions_output, not_in_recipe, pool_samples
from mm_assets.embeddings.assets import load_embeddings, load_question_embeddings
from mm_assets.metadata import content_digest, markdown_table
from mm_assets.planted import load_truth
from mm_assets.partitions import domain_partitions, recipe_partitions
from mm_assets.recipes.assets import section_key
from mm_assets.recipes.sections import step_params_hash
from resources.canaries import CanariesResource
from resources.data_source import MammothSourceResource
from resources.json_io_manager import read_pointers
from resources.recipes import RecipesResource
from resources.storage import StorageResource

RELEVANCE_CODE_VERSION = "1"
REFERENCE_IMAGES = 1024


@dg.asset(group_name="curation_steps", partitions_def=domain_partitions, code_version=RELEVANCE_CODE_VERSION,
          kinds={"parquet"}, automation_condition=ON_CHANGED_DATA,
          description="Question-image relevance of every image row: SigLIP2 similarity of the question to its "
                      "own image, and its profile over the domain's images (flat = not about this image), "
                      "z-scored within the domain.")
def relevance_scores(context: dg.AssetExecutionContext, embeddings: dict, question_embeddings: dict,
                     storage: StorageResource) -> dg.Output[dict]:
    from mm_assets.relevance import relevance_scores as score

    domain = context.partition_key
    st = storage.get()
    started = time.perf_counter()
    ids, modality, image_vecs = load_embeddings(st, embeddings)
    q_ids, q_vecs = load_question_embeddings(st, question_embeddings)
    q_row = {sid: i for i, sid in enumerate(q_ids)}
    image_rows = [i for i, m in enumerate(modality) if m == "image" and ids[i] in q_row]
    sel_ids = [ids[i] for i in image_rows]
    scores = score(sel_ids, [domain] * len(sel_ids), q_vecs[[q_row[s] for s in sel_ids]] if sel_ids else
                   np.zeros((0, q_vecs.shape[1]), np.float32), image_vecs[image_rows],
                   reference_size=REFERENCE_IMAGES)
    version = content_digest([RELEVANCE_CODE_VERSION, embeddings["version"], question_embeddings["version"]])
    root = f"relevance_scores/{domain}/{version}"
    st.write_parquet(f"{root}/scores.parquet", scores)
    return dg.Output({"root": root, "version": version}, data_version=dg.DataVersion(version),
                     metadata={"uri": st.uri(root), "rows": scores.height, "seconds": time.perf_counter() - started,
                               "similarity_median": float(scores["similarity"].median() or 0.0)})


@dg.asset(group_name="curation_steps", partitions_def=recipe_partitions, code_version=RELEVANCE_CODE_VERSION,
          kinds={"parquet"}, automation_condition=ON_CHANGED_DATA,
          ins={"samples": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
          deps=[dg.AssetDep("relevance_scores", partition_mapping=dg.AllPartitionMapping()),
                section_key("relevance")],
          description="A recipe's image-text relevance flags on the stored scores (rule, z threshold, max flag "
                      "rate per domain); flagged rows are removed when the recipe says so.")
def relevance_decisions(context: dg.AssetExecutionContext, samples: dict, storage: StorageResource,
                        recipes: RecipesResource, canaries: CanariesResource,
                        mammoth: MammothSourceResource) -> dg.Output[dict]:
    from mm_assets.relevance import catch_report, flag_unrelated, planted_unrelated, relevance_decisions as decide

    name = context.partition_key
    step = recipes.get(name).step("relevance")
    if step is None:
        return not_in_recipe(context, "relevance")
    st = storage.get()
    relevance_scores = read_pointers(st, "relevance_scores", sorted(samples))
    scores = pl.concat([st.read_parquet(f"{relevance_scores[d]['root']}/scores.parquet")
                        for d in sorted(relevance_scores)])
    pool = pool_samples(st, samples)
    flags = flag_unrelated(scores, rule=step.rule, z_threshold=step.z_threshold, max_flag_rate=step.max_flag_rate)
    params_hash = step_params_hash("relevance", step)
    flagged = flags.filter(pl.col("flagged"))
    md = {"flagged": flagged.height, "flag_rate": flagged.height / max(1, flags.height),
          "flagged_per_domain": dg.MetadataValue.json(dict(flagged.group_by("domain").len().sort("domain").iter_rows())),
          "flagged_examples": dg.MetadataValue.md(markdown_table(
              flagged.join(pool.select("sample_id", "question"), on="sample_id").sort("score")
              .select("sample_id", "domain", "question", "score").head(10)))}
    truth = load_truth(mammoth.planted_truth)
    if truth is not None:
        md["vs_planted_unrelated"] = dg.MetadataValue.json(catch_report(flags, planted_unrelated(truth, pool)))
    return decisions_output(st, "relevance_decisions", name, RELEVANCE_CODE_VERSION, params_hash,
                            decide(flags, pool, remove=step.remove, params_hash=params_hash),
                            canaries.ids(pool, mammoth.planted_truth), metadata=md)
