"""Relevance score assets: question embeddings and relevance scores once per embedding version
(per domain). The per-recipe flags are the step's `decide` in `mm_assets/relevance/step.py`."""

import time

import dagster as dg
import numpy as np

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.embeddings.assets import load_embeddings, load_question_embeddings, question_embeddings
from mm_assets.metadata import content_digest
from mm_assets.partitions import domain_partitions
from resources.storage import StorageResource

__all__ = ["question_embeddings", "relevance_scores"]

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
