"""Mining and decontamination score assets: eval embeddings and neighbours once per embedding
version (the expensive part). The per-recipe decisions (cheap filters on the stored neighbours)
are the steps' `decide` in `mm_assets/mining/step.py` and `mm_assets/decontamination/step.py`."""

import time

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.embeddings.assets import (load_embedder_from_pointer, load_embeddings, load_question_embeddings,
                                         question_embeddings)
from mm_assets.metadata import content_digest
from mm_assets.partitions import benchmark_partitions
from mm_assets.recipes.assets import section_key
from resources.models import EmbedderResource
from resources.recipes import RecipesResource
from resources.storage import StorageResource

__all__ = ["eval_embeddings", "eval_neighbours", "question_embeddings"]

MINING_CODE_VERSION = "1"
# Neighbours stored per eval item and space: at least this many, more when a recipe asks.
MIN_STORED_K = 100
REPORT_THRESHOLDS = (0.95, 0.98, 0.99)


@dg.asset(group_name="curation_steps", partitions_def=benchmark_partitions, code_version=MINING_CODE_VERSION,
          kinds={"numpy"}, automation_condition=ON_CHANGED_DATA,
          description="Eval items embedded with the training embedder: images by the vision tower, questions "
                      "by the text tower (question only, as question_embeddings).")
def eval_embeddings(context: dg.AssetExecutionContext, eval_sets: dict, embedder: dict, storage: StorageResource,
                    embedder_model: EmbedderResource) -> dg.Output[dict]:
    from mm_assets.embeddings.store import write_embeddings
    from mm_assets.mining import eval_embeddings as embed

    st = storage.get()
    version = content_digest([MINING_CODE_VERSION, eval_sets["version"], embedder["version"]])
    root = st.child(f"eval_embeddings/{context.partition_key}/{version}")
    reused = root.exists("question.json")
    if not reused:
        model, tokenizer, processor = load_embedder_from_pointer(st, embedder)
        items = st.read_parquet(eval_sets["root"])
        e = embed(model, tokenizer, processor, items, batch_size=embedder_model.batch_size)
        write_embeddings(root, e.item_ids, e.image, prefix="image")
        write_embeddings(root, e.item_ids, e.question, prefix="question")
    rows = root.read_json("question.json")["rows"]
    return dg.Output({"root": f"eval_embeddings/{context.partition_key}/{version}", "version": version},
                     data_version=dg.DataVersion(version), metadata={"items": rows, "reused": reused})


def stored_eval_vectors(st, pointers: dict):
    """Every benchmark's stored eval embeddings (`eval_embeddings` pointers) as one `EvalEmbeddings`."""
    from mm_assets.embeddings.store import read_embeddings
    from mm_assets.mining import EvalEmbeddings

    parts = []
    for bench in sorted(pointers):
        root = st.child(pointers[bench]["root"])
        ids, image = read_embeddings(root, prefix="image")
        _, question = read_embeddings(root, prefix="question", expected_ids=ids)
        parts.append(EvalEmbeddings(ids, [bench] * len(ids), image, question))
    return EvalEmbeddings.concat(parts)


def stored_k(recipes: RecipesResource) -> int:
    ks = [r.step("mining").k for r in recipes.valid().values() if r.step("mining") is not None]
    return max([MIN_STORED_K, *ks])


@dg.asset(group_name="curation_steps", code_version=MINING_CODE_VERSION, kinds={"faiss", "parquet"},
          automation_condition=ON_CHANGED_DATA,
          ins={"eval_embeddings": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
               "embeddings": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
               "question_embeddings": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
          deps=[dg.AssetDep(section_key("mining_neighbours"), partition_mapping=dg.AllPartitionMapping())],
          description="The eval_neighbours table: every eval item's top-k training samples (eval item, training "
                      "sample, similarity, rank) in image and question space, and every training sample's most "
                      "similar eval item (what decontamination thresholds). faiss, on GPU when there is one.")
def eval_neighbours(context: dg.AssetExecutionContext, eval_embeddings: dict, embeddings: dict,
                    question_embeddings: dict, storage: StorageResource,
                    recipes: RecipesResource) -> dg.Output[dict]:
    from mm_assets.mining import domain_share

    st = storage.get()
    started = time.perf_counter()
    k = stored_k(recipes)
    version = content_digest([MINING_CODE_VERSION, k, {b: p["version"] for b, p in eval_embeddings.items()},
                              {d: p["version"] for d, p in embeddings.items()},
                              {d: p["version"] for d, p in question_embeddings.items()}])
    root = f"eval_neighbours/{version}"
    reused = st.exists(f"{root}/eval_items.parquet")
    if reused:
        table = st.read_parquet(f"{root}/neighbours.parquet")
        nearest = st.read_parquet(f"{root}/nearest_eval_item.parquet")
    else:
        table, nearest = _compute_neighbours(st, root, k, eval_embeddings, embeddings, question_embeddings)
    md = {"uri": st.uri(root), "k": k, "rows": table.height, "reused": reused,
          "seconds": time.perf_counter() - started,
          "top10_from_benchmark_domain/question": dg.MetadataValue.json(domain_share(table, k=10, space="question")),
          "top10_from_benchmark_domain/image": dg.MetadataValue.json(domain_share(table, k=10, space="image")),
          "training_samples_near_an_eval_image": dg.MetadataValue.json(
              {f">= {t}": int((nearest["similarity"] >= t).sum()) for t in REPORT_THRESHOLDS})}
    return dg.Output({"root": root, "version": version, "k": k}, data_version=dg.DataVersion(version), metadata=md)


def training_image_vectors(st, embeddings: dict) -> tuple[list[str], list[str], np.ndarray]:
    """(sample ids, domains, image vectors) of every image row of the stored `embeddings`."""
    img_ids, img_domains, img_vecs = [], [], []
    for domain in sorted(embeddings):
        ids, modality, vecs = load_embeddings(st, embeddings[domain])
        rows = [i for i, m in enumerate(modality) if m == "image"]
        img_ids += [ids[i] for i in rows]
        img_domains += [domain] * len(rows)
        img_vecs.append(vecs[rows])
    return img_ids, img_domains, np.concatenate(img_vecs)


def _compute_neighbours(st, root: str, k: int, eval_embeddings: dict, embeddings: dict,
                        question_embeddings: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    from mm_assets.mining import eval_neighbours as neighbours_of, nearest_eval_items

    evals = stored_eval_vectors(st, eval_embeddings)
    img_ids, img_domains, img = training_image_vectors(st, embeddings)
    q_ids, q_domains, q_vecs = [], [], []
    for domain in sorted(embeddings):
        ids, vecs = load_question_embeddings(st, question_embeddings[domain])
        q_ids += ids
        q_domains += [domain] * len(ids)
        q_vecs.append(vecs)
    q = np.concatenate(q_vecs)
    table = pl.concat([neighbours_of(evals, img_ids, img_domains, img, k=k, space="image"),
                       neighbours_of(evals, q_ids, q_domains, q, k=k, space="question")])
    nearest = nearest_eval_items(evals, img_ids, img_domains, img, space="image")
    st.write_parquet(f"{root}/neighbours.parquet", table)
    st.write_parquet(f"{root}/nearest_eval_item.parquet", nearest)
    st.write_parquet(f"{root}/eval_items.parquet", pl.DataFrame({"benchmark": evals.benchmarks,
                                                                 "item_id": evals.item_ids}))
    return table, nearest
