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

JOBS = [source_job, ingest_domain_job, quarantine_job, eval_sets_job]
