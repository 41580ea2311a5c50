"""Everything the code location serves, on one screen."""

import dagster as dg

from jobs import JOBS, SENSORS
from mm_assets.curated.assets import curated_dataset
from mm_assets.dedup.assets import semdedup_mask, semdedup_scores
from mm_assets.embeddings.assets import embedder, embeddings, question_embeddings
from mm_assets.evaluation.assets import checkpoint, eval_scores, leaderboard
from mm_assets.mining.assets import decontamination_decisions, eval_embeddings, eval_neighbours, mining_decisions
from mm_assets.perplexity.assets import perplexity_decisions, perplexity_scores, reference_model, trusted_pool
from mm_assets.relevance.assets import relevance_decisions, relevance_scores
from mm_assets.rephrase.assets import rephrase_decisions
from mm_assets.recipes.assets import RECIPE_SECTION_ASSETS
from mm_assets.training.assets import training_run
from mm_assets.sources.assets import eval_sets, quarantine, raw_shards, samples, source
from resources.json_io_manager import JsonPointerIOManager
from resources.settings import default_resources

ASSETS = [
    source, raw_shards, samples, quarantine, eval_sets,   # sources
    embedder, embeddings, question_embeddings,           # embeddings
    *RECIPE_SECTION_ASSETS,                               # recipes (observed files)
    semdedup_scores, semdedup_mask,                       # dedup
    trusted_pool, reference_model, perplexity_scores, perplexity_decisions,          # curation steps:
    relevance_scores, relevance_decisions, rephrase_decisions,                       # scores once,
    eval_embeddings, eval_neighbours, mining_decisions, decontamination_decisions,   # decisions per recipe
    curated_dataset,                                      # curated
    training_run,                                         # training
    checkpoint, eval_scores, leaderboard,                 # evaluation
]


def build_definitions(**overrides) -> dg.Definitions:
    """The code location; resources from the environment unless given (tests pass temporary ones)."""
    resources = {**default_resources(), **overrides}
    resources["io_manager"] = JsonPointerIOManager(storage=resources["storage"])
    return dg.Definitions(assets=ASSETS, jobs=JOBS, sensors=SENSORS, resources=resources)


defs = build_definitions()
