"""A real `dagster dev` (webserver + daemon): a run whose worker dies with nothing left to report
it is marked FAILED by the daemon's run monitoring, not left STARTED.

(The per-domain backfill of `raw_shards` + `samples` for two domains, and its completion, is
launched through the UI's Materialize dialog in a real browser by test_ui_browser_e2e.py; this
test launches its backfill with the same GraphQL mutation the dialog sends.)"""

import os
import shutil
import signal
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from servers import dagster_dev
REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e

LAUNCH = """
mutation($p: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $p) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on PartitionSetNotFoundError { message }
  }
}"""
LOCATION = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _process_state(pid: int) -> str:
    """What is left of a killed worker: nothing, or a zombie its new parent has not reaped."""
    try:
        return f"process {pid}: {psutil.Process(pid).status()}"
    except psutil.NoSuchProcess:
        return f"process {pid}: gone"


def test_a_killed_run_worker_is_marked_failed(sample_data, tmp_path, monkeypatch):
    home = tmp_path / "home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {"MM_HOME": str(home), "MM_SAMPLE_DATA": str(sample_data), "DAGSTER_HOME": str(dagster_home)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    from mm_assets.sources.assets import source
    from resources.json_io_manager import JsonPointerIOManager
    from resources.settings import source_resource, storage_resource

    instance = dg.DagsterInstance.get()
    storage = storage_resource()
    # The unpartitioned `source` first (in-process, same instance), then a partitioned backfill.
    assert dg.materialize([source], instance=instance, resources={
        "storage": storage, "mammoth": source_resource(), "io_manager": JsonPointerIOManager(storage=storage)}).success

    with dagster_dev(REPO_ROOT / "workspace.yaml", dagster_home, cwd=REPO_ROOT, extra_env=env) as dev:
        entries = dev.graphql(LOCATION)["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["loadStatus"]) for e in entries] == [("mm_curation", "LOADED")], entries

        # a run worker killed mid-run together with the code server that launched it (as an
        # out-of-memory kill of both would): nothing is left to report the run, which Dagster's
        # default launcher would leave STARTED for ever -> the run monitoring marks it FAILED
        launched = dev.graphql(LAUNCH, {"p": {"partitionNames": ["ocr"], "assetSelection": [
            {"path": ["raw_shards"]}, {"path": ["samples"]}], "title": "e2e: killed"}})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        from resources.run_launcher import run_worker
        # only the backfill's run: the recipe sensor's first tick launches an observation run at
        # the same time, and killing that one's worker is not what this test is about
        of_backfill = dg.RunsFilter(tags={"dagster/backfill": launched["backfillId"]})
        # killed once the run is STARTED: the worker stores its run-start event before it sets the
        # run's status, and a worker killed in between leaves the run STARTING, which the daemon
        # fails only after `start_timeout_seconds` (600 s) — seen once in CI under load
        deadline, worker = time.time() + 180, None
        while time.time() < deadline and worker is None:
            runs = instance.get_runs(filters=of_backfill)
            if runs and runs[0].status == dg.DagsterRunStatus.STARTED:
                worker = run_worker(instance, runs[0].run_id)
            time.sleep(0.1)
        assert worker, dev.log_tail()
        server = psutil.Process(worker[0]).parent()
        assert "grpc" in " ".join(server.cmdline()), server.cmdline()
        server.kill()
        os.kill(worker[0], signal.SIGKILL)
        killed = time.time()
        # (the monitoring polls every 20 s; the bound is for a daemon starved by other processes)
        while time.time() < killed + 300 and instance.get_run_by_id(runs[0].run_id).status != \
                dg.DagsterRunStatus.FAILURE:
            time.sleep(2)
        assert instance.get_run_by_id(runs[0].run_id).status == dg.DagsterRunStatus.FAILURE, \
            (_process_state(worker[0]), dev.log_tail())
        failure = [e.message for e in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
        assert failure and f"run worker process {worker[0]} is gone" in failure[0], failure
        print(f"killed run worker marked FAILED after {time.time() - killed:.0f} s")
