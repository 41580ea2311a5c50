"""The checkpoint sensor: every new *complete* checkpoint becomes a partition and is evaluated.

Each tick lists the checkpoint store (a local directory or an `s3://` prefix). A directory
counts only once its COMPLETE marker is present and every file matches the manifest's sha256
(a trainer may still be writing it; checkpoints from trainers outside this project register the
same way). A new one gets a `checkpoint` partition and a registration run; once registered, one
eval run per benchmark is requested (every benchmark, or the store's `evaluate_on`). Run keys
(`checkpoint-<name>`, `eval-<name>-<benchmark>`) make every request idempotent; the cursor
remembers what was requested. How many checkpoints are loaded at once is capped by the eval
pool, not here.
"""

import json

import dagster as dg

from mm_assets.checkpoints import IncompleteCheckpoint, list_complete, verify_checkpoint
from mm_assets.partitions import checkpoint_partitions
from resources.evaluation import CheckpointStoreResource


def _registered(instance, name: str) -> bool:
    return bool(instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("checkpoint"), asset_partitions=[name]), limit=1).records)


def checkpoint_sensor_tick(context: dg.SensorEvaluationContext, checkpoints: CheckpointStoreResource):
    store = checkpoints.get()
    state = json.loads(context.cursor) if context.cursor else {"registered": [], "evaluated": []}
    registered, evaluated = set(state["registered"]), set(state["evaluated"])
    known = set(context.instance.get_dynamic_partitions(checkpoint_partitions.name))
    new, waiting = [], []
    for name in list_complete(store):
        if name in registered:
            continue
        try:
            verify_checkpoint(store, name)
        except IncompleteCheckpoint as exc:
            waiting.append(f"{name}: {exc}")
            continue
        new.append(name)
    requests = [dg.RunRequest(job_name="checkpoint_job", partition_key=n, run_key=f"checkpoint-{n}") for n in new]
    ready = [n for n in sorted(registered - evaluated) if _registered(context.instance, n)]
    requests += [dg.RunRequest(job_name="eval_job", run_key=f"eval-{n}-{b}",
                               partition_key=dg.MultiPartitionKey({"checkpoint": n, "benchmark": b}))
                 for n in ready for b in checkpoints.benchmarks()]
    for line in waiting:
        context.log.info(f"not complete yet, will look again: {line}")
    if not requests:
        return dg.SkipReason(f"no new complete checkpoints ({len(waiting)} incomplete)")
    add = [n for n in new if n not in known]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[checkpoint_partitions.build_add_request(add)] if add else [],
        cursor=json.dumps({"registered": sorted(registered | set(new)), "evaluated": sorted(evaluated | set(ready))}))


def build_checkpoint_sensor(checkpoint_job, eval_job) -> dg.SensorDefinition:
    @dg.sensor(name="checkpoint_sensor", jobs=[checkpoint_job, eval_job], minimum_interval_seconds=10,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Registers complete checkpoints and requests their evals on every benchmark.")
    def checkpoint_sensor(context: dg.SensorEvaluationContext, checkpoints: CheckpointStoreResource):
        return checkpoint_sensor_tick(context, checkpoints)
    return checkpoint_sensor
