"""The `mmgen` step's recipe-independent assets: the reference split per benchmark and
`mmgen_reference` — its items embedded, grouped into subgroups and described, and every
reference image's nearest training images (the candidates). The per-recipe part (generation
from the cache, validation, filtering) is the step's `decide` in `mm_assets/mmgen/step.py`."""

import io
import time

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.embeddings.assets import load_embedder_from_pointer
from mm_assets.metadata import content_digest, markdown_table
from mm_assets.mining.assets import eval_embeddings, eval_neighbours, question_embeddings, training_image_vectors
from mm_assets.perplexity.assets import reference_model, trusted_pool
from mm_assets.sources.assets import reference_sets
from resources.models import EmbedderResource
from resources.storage import StorageResource

__all__ = ["eval_embeddings", "eval_neighbours", "mmgen_reference", "question_embeddings", "reference_model",
           "reference_sets", "trusted_pool"]

MMGEN_CODE_VERSION = "1"
CANDIDATES_PER_ITEM = 50      # nearest training images stored per reference item
SUBGROUP_CLUSTERS = 4         # clusters of reference questions where a benchmark has no question types


@dg.asset(group_name="curation_steps", code_version=MMGEN_CODE_VERSION, kinds={"faiss", "parquet"},
          automation_condition=ON_CHANGED_DATA,
          ins={"reference_sets": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
               "embeddings": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
               "eval_sets": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
               "eval_embeddings": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
          description="The reference splits' items embedded with the training embedder and grouped into "
                      "subgroups (the benchmark's question types where it has them, else clusters of the "
                      "questions), each described with in-context examples; every reference image's nearest "
                      "training images, the candidates MM-GEN generates for; the scored eval items placed in "
                      "the same subgroups by their questions (for the study's per-subgroup scores).")
def mmgen_reference(context: dg.AssetExecutionContext, reference_sets: dict, embedder: dict, embeddings: dict,
                    eval_sets: dict, eval_embeddings: dict, storage: StorageResource,
                    embedder_model: EmbedderResource) -> dg.Output[dict]:
    st = storage.get()
    started = time.perf_counter()
    split_versions = {b: p["version"] for b, p in sorted(reference_sets.items())}
    version = content_digest([MMGEN_CODE_VERSION, CANDIDATES_PER_ITEM, SUBGROUP_CLUSTERS, split_versions,
                              embedder["version"], {d: p["version"] for d, p in embeddings.items()},
                              {b: p["version"] for b, p in eval_sets.items()},
                              {b: p["version"] for b, p in eval_embeddings.items()}])
    root = f"mmgen_reference/{version}"
    reused = st.exists(f"{root}/eval_item_subgroups.parquet")        # written last
    if not reused:
        items = pl.concat([st.read_parquet(reference_sets[b]["root"]) for b in sorted(reference_sets)])
        if items.height == 0:         # mmgen's decisions say which benchmark lacks its reference split
            context.log.warning("no reference split has any item: MM-GEN needs "
                                "<eval dir>/reference/<benchmark>.parquet")
        _compute_reference(st, root, items, embedder, embeddings, embedder_model.batch_size)
        _place_eval_items(st, root, items, eval_sets, eval_embeddings)
    subgroups = st.read_parquet(f"{root}/subgroups.parquet")
    return dg.Output({"root": root, "version": version, "reference_sets": split_versions},
                     data_version=dg.DataVersion(version),
                     metadata={"uri": st.uri(root), "reused": reused, "seconds": time.perf_counter() - started,
                               "reference_split_versions": dg.MetadataValue.json(split_versions),
                               "subgroups": dg.MetadataValue.md(markdown_table(subgroups.drop("examples")))})


def _compute_reference(st, root: str, items: pl.DataFrame, embedder: dict, embeddings: dict, batch_size: int) -> None:
    """Subgroups, their descriptions and every reference image's nearest training images, under `root`."""
    from mm_assets.mining import EvalEmbeddings, eval_embeddings as embed, eval_neighbours as neighbours_of
    from mm_assets.mining.neighbours import NEIGHBOUR_SCHEMA
    from mm_assets.mmgen.subgroups import SUBGROUP_SCHEMA, assign_subgroups, describe_subgroups

    columns = ["benchmark", "item_id", "question", "answers", "subgroup", "by", "image_sha256"]
    if items.height == 0:
        st.write_parquet(f"{root}/reference_items.parquet",
                         items.with_columns(pl.lit(None, dtype=pl.String).alias("subgroup"),
                                            pl.lit(None, dtype=pl.String).alias("by")).select(columns))
        st.write_parquet(f"{root}/subgroups.parquet", pl.DataFrame(schema=SUBGROUP_SCHEMA))
        st.write_parquet(f"{root}/neighbours.parquet", pl.DataFrame(schema=NEIGHBOUR_SCHEMA))
        return
    model, tokenizer, processor = load_embedder_from_pointer(st, embedder)
    e = embed(model, tokenizer, processor, items, batch_size=batch_size)
    grouped, centroids = assign_subgroups(items, e.question, clusters=SUBGROUP_CLUSTERS)
    buf = io.BytesIO()
    np.savez(buf, **centroids)
    st.write_bytes(f"{root}/centroids.npz", buf.getvalue())
    img_ids, img_domains, img = training_image_vectors(st, embeddings)
    table = neighbours_of(EvalEmbeddings(e.item_ids, e.benchmarks, e.image, e.question), img_ids, img_domains, img,
                          k=CANDIDATES_PER_ITEM, space="image")
    st.write_parquet(f"{root}/reference_items.parquet", grouped.select(columns))
    st.write_parquet(f"{root}/subgroups.parquet", describe_subgroups(grouped))
    st.write_parquet(f"{root}/neighbours.parquet", table)


def _place_eval_items(st, root: str, reference: pl.DataFrame, eval_sets: dict, eval_embeddings: dict) -> None:
    """`eval_item_subgroups.parquet`: every scored eval item of a benchmark with a reference split
    in one of its subgroups (questions only)."""
    from mm_assets.mining.assets import stored_eval_vectors
    from mm_assets.mmgen.subgroups import place_in_subgroups

    benches = sorted(set(reference["benchmark"].to_list()) & set(eval_sets) & set(eval_embeddings))
    schema = {"benchmark": pl.String, "item_id": pl.String, "subgroup": pl.String}
    if not benches:
        st.write_parquet(f"{root}/eval_item_subgroups.parquet", pl.DataFrame(schema=schema))
        return
    with np.load(io.BytesIO(st.read_bytes(f"{root}/centroids.npz"))) as z:
        centroids = {k: z[k] for k in z.files}
    vectors = stored_eval_vectors(st, {b: eval_embeddings[b] for b in benches})
    row_of = {(b, i): n for n, (b, i) in enumerate(zip(vectors.benchmarks, vectors.item_ids))}
    items = pl.concat([st.read_parquet(eval_sets[b]["root"]).select("benchmark", "item_id", "native") for b in benches])
    rows = [row_of[(b, i)] for b, i in items.select("benchmark", "item_id").iter_rows()]
    st.write_parquet(f"{root}/eval_item_subgroups.parquet",
                     place_in_subgroups(items, vectors.question[rows], centroids).cast(schema))
