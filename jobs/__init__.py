"""Asset jobs, the recipe sensor, the checkpoint sensor and the automation sensor.

One job per stage step; partitioned steps get their partitions from their assets (domain,
benchmark, embedding space, recipe or checkpoint), so a run is one partition or a backfill over
several. The curation steps' jobs come from the step registry: `<score asset>_job` for each
recipe-independent score asset, `<decisions asset>_job` for each step's decisions, and
`step_decisions_job` for every step's decisions at once.
"""

import dagster as dg

from jobs.checkpoints import build_checkpoint_sensor
from jobs.recipes import OBSERVE_RECIPES_JOB, build_automation_sensor, recipe_sensor
from mm_assets.curated.step_assets import SCORE_ASSETS
from mm_assets.steps import STEPS

_CORE_JOBS = {
    "source_job": (["source"], "Scan the annotation arrays and index the image tarballs."),
    "ingest_domain_job": (["raw_shards", "samples"],
                          "Re-shard one domain's records into WebDataset and build its samples table."),
    "quarantine_job": (["quarantine"], "Collect every rejected record with its reason into one table."),
    "eval_sets_job": (["eval_sets"], "Cache one benchmark's eval export in the uniform schema."),
    "embedder_job": (["embedder"], "Load the SigLIP2 embedder, or train the tiny default on the sample pool."),
    "embeddings_job": (["embeddings"],
                       "Embed one domain's samples (image tower, or text tower for text-only rows)."),
    "curated_dataset_job": (["curated_dataset"],
                            "Apply one recipe's decisions to one domain and write a curated WebDataset version."),
    "base_model_job": (["base_model"], "Build (or fingerprint) the model every recipe's training starts from."),
    "training_job": (["training_run"], "Train on one recipe's curated datasets to its token budget."),
    "checkpoint_job": (["checkpoint"], "Verify and register one complete checkpoint."),
    "eval_job": (["eval_scores"], "Evaluate one checkpoint on one benchmark (capped by the eval pool)."),
    "leaderboard_job": (["leaderboard"], "Collect every eval table into the leaderboard and compare recipes."),
    "ablation_report_job": (["ablation_report"], "Compare every recipe to baseline and the oracle over seeds, "
                                                 "paired on the eval items, with intervals."),
    "mixing_start_job": (["mixing_start"], "Train the domain experts' shared start on every domain of the mixing "
                                           "recipe."),
    "domain_expert_job": (["domain_expert"], "Train one domain's expert from the shared start."),
    "soup_sweep_job": (["soup_sweep"], "Write and evaluate the uniform soup of every subset of the domain experts, "
                                       "in Gray-code order."),
    "mixture_run_job": (["mixture_run"], "Train a model for real on one data mixture from the experts' start."),
    "proxy_check_job": (["proxy_check"], "Rank agreement of soups and real mixture models (Spearman's rho)."),
    "mixing_table_job": (["mixing_table"], "Collect every evaluated soup into the mixing table: best mixtures, "
                                           "each expert's gain, searches against the exhaustive table."),
}


def _first_sentence(text: str | None) -> str:
    text = (text or "").strip()
    return text.split(". ")[0].rstrip(".") + "." if text else ""


def step_jobs() -> dict[str, tuple[list[str], str]]:
    """From the step registry: one job per score asset, one for every step's decisions."""
    jobs = {f"{a.key.to_user_string()}_job": ([a.key.to_user_string()], _first_sentence(a.descriptions_by_key[a.key]))
            for a in SCORE_ASSETS}
    for step in STEPS:
        jobs[f"{step.decisions_asset}_job"] = ([step.decisions_asset], f"The {step.kind} step's decisions for one recipe.")
    jobs["step_decisions_job"] = ([s.decisions_asset for s in STEPS],
                                  "Every curation step's decisions for one recipe (cheap: thresholds on stored scores).")
    return jobs


JOB_TABLE = {**_CORE_JOBS, **step_jobs()}
_ASSET_JOBS = {name: dg.define_asset_job(name, selection=selection, description=description)
               for name, (selection, description) in JOB_TABLE.items()}
JOBS = [*_ASSET_JOBS.values(), OBSERVE_RECIPES_JOB]


def build_sensors(assets) -> list[dg.SensorDefinition]:
    """The sensors of the code location; the automation sensor targets every asset that carries
    an automation condition (derived from the assets, so none can fall to Dagster's default
    automation sensor, which starts STOPPED)."""
    return [recipe_sensor, build_automation_sensor(assets),
            build_checkpoint_sensor(_ASSET_JOBS["checkpoint_job"], _ASSET_JOBS["eval_job"])]
