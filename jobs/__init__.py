"""Asset jobs (later: sensors, schedules and automation sensors)."""

import dagster as dg

# Partitioned by domain: one run per domain, or a backfill over several.
ingest_domain_job = dg.define_asset_job(
    "ingest_domain_job", selection=["raw_shards", "samples"],
    description="Re-shard one domain's records into WebDataset and build its samples table.")

source_job = dg.define_asset_job(
    "source_job", selection=["source"],
    description="Scan the annotation arrays and index the image tarballs.")

quarantine_job = dg.define_asset_job(
    "quarantine_job", selection=["quarantine"],
    description="Collect every rejected record with its reason into one table.")

eval_sets_job = dg.define_asset_job(
    "eval_sets_job", selection=["eval_sets"],
    description="Cache one benchmark's eval export in the uniform schema.")

embedder_job = dg.define_asset_job(
    "embedder_job", selection=["embedder"],
    description="Load the SigLIP2 embedder, or train the tiny default on the sample pool.")

embeddings_job = dg.define_asset_job(
    "embeddings_job", selection=["embeddings"],
    description="Embed one domain's samples (image tower, or text tower for text-only rows).")

semdedup_scores_job = dg.define_asset_job(
    "semdedup_scores_job", selection=["semdedup_scores"],
    description="k-means and pairwise SemDeDup scores for one embedding space (the expensive part).")

semdedup_mask_job = dg.define_asset_job(
    "semdedup_mask_job", selection=["semdedup_mask"],
    description="Threshold stored SemDeDup scores for a target removal fraction (no k-means, no pairwise).")

JOBS = [source_job, ingest_domain_job, quarantine_job, eval_sets_job, embedder_job, embeddings_job,
        semdedup_scores_job, semdedup_mask_job]
