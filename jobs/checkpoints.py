"""The checkpoint sensor: every new *complete* checkpoint becomes a partition and is evaluated.

Each tick lists the checkpoint store (a local directory or an `s3://` prefix). A directory
counts only once its COMPLETE marker is present and every file matches the manifest's sha256
(a trainer may still be writing it; checkpoints from trainers outside this project register the
same way). A new one gets a `checkpoint` partition and a registration run; once registered, one
eval run per benchmark is requested (every benchmark, or the store's `evaluate_on`). Run keys
(`checkpoint-<name>`, `eval-<name>-<benchmark>`) make every request idempotent; the cursor
remembers what was requested. What the instance already holds counts whoever put it there (the
demo's in-process runs, another daemon, a restart with a fresh cursor): a checkpoint whose
partition is materialized with the same data version is not registered again, and an eval
that is materialized is not requested again (and `eval_scores` itself reuses a stored result
with the same inputs). How many checkpoints are loaded at once is capped by the eval pool, not
here.
"""

import json

import dagster as dg

from mm_assets.checkpoints import IncompleteCheckpoint, checkpoint_version, list_complete, verify_checkpoint
from mm_assets.partitions import checkpoint_partitions
from resources.evaluation import CheckpointStoreResource


def _registered_version(instance, name: str) -> str | None:
    """The data version the instance holds for `checkpoint[name]`, or None."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("checkpoint"), asset_partitions=[name]), limit=1).records
    if not records:
        return None
    tags = records[0].event_log_entry.dagster_event.event_specific_data.materialization.tags or {}
    return tags.get("dagster/data_version")


def _eval_requests(names, benchmarks, skip: set[str] = frozenset()) -> list[dg.RunRequest]:
    keys = [dg.MultiPartitionKey({"checkpoint": n, "benchmark": b}) for n in names for b in benchmarks]
    return [dg.RunRequest(job_name="eval_job", run_key=f"eval-{k.keys_by_dimension['checkpoint']}-"
                                                      f"{k.keys_by_dimension['benchmark']}", partition_key=k)
            for k in keys if str(k) not in skip]


def checkpoint_sensor_tick(context: dg.SensorEvaluationContext, checkpoints: CheckpointStoreResource):
    store = checkpoints.get()
    state = json.loads(context.cursor) if context.cursor else {"registered": [], "evaluated": []}
    registered, evaluated = set(state["registered"]), set(state["evaluated"])
    known = set(context.instance.get_dynamic_partitions(checkpoint_partitions.name))
    new, waiting, already = [], [], []
    for name in list_complete(store):
        if name in registered:
            continue
        try:
            if name in known:       # registered before, by any process: same content, nothing to do
                manifest = verify_checkpoint(store, name, check_hashes=False)
                if _registered_version(context.instance, name) == checkpoint_version(manifest):
                    already.append(name)
                    continue
            verify_checkpoint(store, name)
        except IncompleteCheckpoint as exc:
            waiting.append(f"{name}: {exc}")
            continue
        new.append(name)
    requests = [dg.RunRequest(job_name="checkpoint_job", partition_key=n, run_key=f"checkpoint-{n}") for n in new]
    # registered by this sensor on an earlier tick: evaluate on every benchmark
    ready = [n for n in sorted(registered - evaluated) if _registered_version(context.instance, n)]
    requests += _eval_requests(ready, checkpoints.benchmarks())
    if already:             # found registered: evaluate only where no eval table exists yet
        materialized = {str(k) for k in context.instance.get_materialized_partitions(dg.AssetKey("eval_scores"))}
        requests += _eval_requests(already, checkpoints.benchmarks(), skip=materialized)
    for line in waiting:
        context.log.info(f"not complete yet, will look again: {line}")
    cursor = json.dumps({"registered": sorted(registered | set(new) | set(already)),
                         "evaluated": sorted(evaluated | set(ready) | set(already))})
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"no new complete checkpoints ({len(waiting)} incomplete, {len(already)} already registered)"),
            cursor=cursor)
    add = [n for n in new if n not in known]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[checkpoint_partitions.build_add_request(add)] if add else [],
        cursor=cursor)


def build_checkpoint_sensor(checkpoint_job, eval_job) -> dg.SensorDefinition:
    @dg.sensor(name="checkpoint_sensor", jobs=[checkpoint_job, eval_job], minimum_interval_seconds=10,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Registers complete checkpoints and requests their evals on every benchmark.")
    def checkpoint_sensor(context: dg.SensorEvaluationContext, checkpoints: CheckpointStoreResource):
        return checkpoint_sensor_tick(context, checkpoints)
    return checkpoint_sensor
