"""Everything the code location serves, on one screen."""

import dagster as dg

from jobs import JOBS, build_sensors
from mm_assets.curated.assets import curated_dataset
from mm_assets.curated.step_assets import DECISIONS_ASSETS, SCORE_ASSETS
from mm_assets.embeddings.assets import embedder, embeddings
from mm_assets.evaluation.assets import checkpoint, eval_scores, leaderboard
from mm_assets.mixing.assets import mixing_table, proxy_check
from mm_assets.mixing.experts import domain_expert, mixing_start, mixture_run, soup_sweep
from mm_assets.recipes.assets import RECIPE_SECTION_ASSETS
from mm_assets.sources.assets import eval_sets, quarantine, raw_shards, samples, source
from mm_assets.study.assets import ablation_report
from mm_assets.training.assets import base_model, training_run
from resources.json_io_manager import JsonPointerIOManager
from resources.settings import default_resources

ASSETS = [
    source, raw_shards, samples, quarantine, eval_sets,   # sources
    embedder, embeddings,                                 # embeddings
    *RECIPE_SECTION_ASSETS,                               # recipes (observed files)
    *SCORE_ASSETS,                                        # curation steps (mm_assets/steps.py): scores once,
    *DECISIONS_ASSETS,                                    # decisions per recipe
    curated_dataset,                                      # curated
    base_model, training_run,                             # training
    checkpoint, eval_scores, leaderboard,                 # evaluation
    ablation_report,                                      # the curation study
    mixing_start, domain_expert, soup_sweep, mixing_table,   # data mixing by merging experts,
    mixture_run, proxy_check,                                # and the check against real mixtures
]
SENSORS = build_sensors(ASSETS)


def build_definitions(**overrides) -> dg.Definitions:
    """The code location; resources from the environment unless given (tests pass temporary ones)."""
    resources = {**default_resources(), **overrides}
    resources["io_manager"] = JsonPointerIOManager(storage=resources["storage"])
    # Runs are the unit of parallelism (the daemon's run queue and pools): each run's steps
    # execute in its run worker, instead of one more spawned Python process per step that loads
    # the code location and torch again (seconds of CPU for every daemon-launched run).
    return dg.Definitions(assets=ASSETS, jobs=JOBS, sensors=SENSORS, resources=resources,
                          executor=dg.in_process_executor)


defs = build_definitions()
