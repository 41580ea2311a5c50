"""Asset jobs, the recipe sensor and the automation sensor.

One job per stage step; partitioned steps get their partitions from their assets (domain,
benchmark, embedding space or recipe), so a run is one partition or a backfill over several.
"""

import dagster as dg

from jobs.checkpoints import build_checkpoint_sensor
from jobs.recipes import CURATION_AUTOMATION, OBSERVE_RECIPES_JOB, recipe_sensor

_JOBS = {
    "source_job": (["source"], "Scan the annotation arrays and index the image tarballs."),
    "ingest_domain_job": (["raw_shards", "samples"],
                          "Re-shard one domain's records into WebDataset and build its samples table."),
    "quarantine_job": (["quarantine"], "Collect every rejected record with its reason into one table."),
    "eval_sets_job": (["eval_sets"], "Cache one benchmark's eval export in the uniform schema."),
    "embedder_job": (["embedder"], "Load the SigLIP2 embedder, or train the tiny default on the sample pool."),
    "embeddings_job": (["embeddings"],
                       "Embed one domain's samples (image tower, or text tower for text-only rows)."),
    "semdedup_scores_job": (["semdedup_scores"],
                            "k-means and pairwise SemDeDup scores for one embedding space (the expensive part)."),
    "semdedup_mask_job": (["semdedup_mask"],
                          "Threshold stored SemDeDup scores for one recipe's target (no k-means, no pairwise)."),
    "question_embeddings_job": (["question_embeddings"], "Embed one domain's questions alone (text tower)."),
    "relevance_scores_job": (["relevance_scores"], "Question-image relevance scores of one domain's image rows."),
    "eval_embeddings_job": (["eval_embeddings"], "Embed one benchmark's eval items (images and questions)."),
    "eval_neighbours_job": (["eval_neighbours"], "kNN of every eval item among the training samples (faiss)."),
    "trusted_pool_job": (["trusted_pool"], "Ingest the trusted pool into WebDataset shards."),
    "reference_model_job": (["reference_model"], "Train the tiny perplexity reference model on the trusted pool."),
    "perplexity_scores_job": (["perplexity_scores"], "Score one domain's samples with every perplexity scorer."),
    "step_decisions_job": (["semdedup_mask", "perplexity_decisions", "relevance_decisions", "rephrase_decisions",
                            "mining_decisions", "decontamination_decisions"],
                           "Every curation step's decisions for one recipe (cheap: thresholds on stored scores)."),
    "curated_dataset_job": (["curated_dataset"],
                            "Apply one recipe's decisions to one domain and write a curated WebDataset version."),
    "training_job": (["training_run"], "Train on one recipe's curated datasets; one sealed checkpoint per epoch."),
    "checkpoint_job": (["checkpoint"], "Verify and register one complete checkpoint."),
    "eval_job": (["eval_scores"], "Evaluate one checkpoint on one benchmark (capped by the eval pool)."),
    "leaderboard_job": (["leaderboard"], "Collect every eval table into the leaderboard."),
}

_ASSET_JOBS = {name: dg.define_asset_job(name, selection=selection, description=description)
               for name, (selection, description) in _JOBS.items()}
JOBS = [*_ASSET_JOBS.values(), OBSERVE_RECIPES_JOB]
SENSORS = [recipe_sensor, CURATION_AUTOMATION,
           build_checkpoint_sensor(_ASSET_JOBS["checkpoint_job"], _ASSET_JOBS["eval_job"])]
