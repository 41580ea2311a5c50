"""The run launcher of `dagster dev` and the demo's instance: Dagster's default launcher, plus a
health check so that the daemon's run monitoring can see a dead run worker.

Dagster's `DefaultRunLauncher` does not support `check_run_worker_health`, so a run whose worker
was killed (SIGKILL, out of memory) or died writing to a full disk stays STARTED forever and
keeps its concurrency slots. The run worker's process id is in the run's own event log (every
event records the pid of the process that emitted it; the run-start event comes from the
worker); the worker is gone when no process with that id exists, or the one that does was
started after the run began (the id was reused). Such a run is marked FAILED by the daemon
(`run_monitoring.enabled`), with the reason, and the daemon frees the pool slots it held
(`free_slots_after_run_end_seconds`) — else two killed evaluations would block the eval pool
(limit 2) for good. Without a daemon (the demo, the in-process runner), `release_dead_runs` does
the same when a home is opened.

A worker killed between storing its run-start event and setting the run's status (a moment)
leaves the run STARTING; the daemon checks STARTING runs only against `start_timeout_seconds`,
so it fails such a run after that timeout (600 s in dagster.yaml); `release_dead_runs` at once.
"""

from __future__ import annotations

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import FINISHED_STATUSES

_CLOCK_SLACK_S = 5.0      # between the event's timestamp and the process's start time


def run_worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, start timestamp) of the process that started the run, from its event log."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if not records or records[0].event_log_entry.dagster_event is None:
        return None
    entry = records[0].event_log_entry
    return entry.dagster_event.pid, entry.timestamp


def worker_status(pid: int, started: float) -> CheckRunHealthResult:
    try:
        process = psutil.Process(pid)
        created, status = process.create_time(), process.status()
    except psutil.NoSuchProcess:
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone")
    if status == psutil.STATUS_ZOMBIE:
        # killed, and its new parent (the code server that launched it was killed too, as by an
        # out-of-memory kill) has not reaped it: an init that never reaps keeps it for good
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone (a zombie)")
    if created > started + _CLOCK_SLACK_S:
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone "
                                                         f"(its id now belongs to a newer process)")
    return CheckRunHealthResult(WorkerStatus.RUNNING)


class MonitoredRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose run workers the daemon's run monitoring can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        found = run_worker(self._instance, run.run_id)
        if found is None or found[0] is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has not recorded its worker yet")
        return worker_status(*found)


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """What the daemon's run monitoring does, for an instance used without a daemon: mark the
    started runs whose worker is gone FAILED, and free the concurrency slots still held by
    finished runs. Returns the runs marked failed."""
    failed = []
    # STARTING too: a worker killed between storing its run-start event and setting the run's
    # status leaves it STARTING (the daemon fails such a run only after its start timeout)
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                                   dg.DagsterRunStatus.STARTING])):
        run = record.dagster_run
        found = run_worker(instance, run.run_id)
        if found is None or found[0] is None:
            continue
        health = worker_status(*found)
        if health.status == WorkerStatus.FAILED:
            instance.report_run_failed(run, f"Detected run worker status {health}; marking the run failed.")
            failed.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holding = storage.get_concurrency_run_ids()
        if holding:
            for record in instance.get_run_records(dg.RunsFilter(run_ids=list(holding),
                                                                 statuses=list(FINISHED_STATUSES))):
                storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
    return failed
