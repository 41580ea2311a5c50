"""Everything the code location serves, on one screen."""

import dagster as dg

from jobs import JOBS, SENSORS
from mm_assets.curated.assets import curated_dataset
from mm_assets.dedup.assets import semdedup_mask, semdedup_scores
from mm_assets.embeddings.assets import embedder, embeddings
from mm_assets.recipes.assets import RECIPE_SECTION_ASSETS
from mm_assets.sources.assets import eval_sets, quarantine, raw_shards, samples, source
from resources.json_io_manager import JsonPointerIOManager
from resources.settings import embedder_resource, recipes_resource, source_resource, storage_resource

ASSETS = [
    source, raw_shards, samples, quarantine, eval_sets,   # sources
    embedder, embeddings,                                 # embeddings
    *RECIPE_SECTION_ASSETS,                               # recipes (observed files)
    semdedup_scores, semdedup_mask,                       # dedup
    curated_dataset,                                      # curated
]


def build_definitions(storage, mammoth, embedder_model, recipes) -> dg.Definitions:
    """The code location for a given set of resources (tests pass temporary ones)."""
    return dg.Definitions(
        assets=ASSETS, jobs=JOBS, sensors=SENSORS,
        resources={"storage": storage, "mammoth": mammoth, "embedder_model": embedder_model,
                   "recipes": recipes, "io_manager": JsonPointerIOManager(storage=storage)},
    )


defs = build_definitions(storage_resource(), source_resource(), embedder_resource(), recipes_resource())
