"""The run launcher's health check: the run worker's pid comes from the run's own event log; a
worker that is gone (or whose pid now names a newer process) is FAILED, a live one RUNNING.
Under a real daemon: tests/test_backfill_e2e.py kills a run worker and sees the run FAILED."""

import os
import subprocess
import sys
import time

import dagster as dg
import psutil
import pytest
from dagster._core.launcher import WorkerStatus

from resources.run_launcher import run_worker, worker_status


@dg.asset
def quick() -> int:
    return 1


def test_the_run_worker_is_found_in_the_event_log_and_its_death_is_seen():
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([quick], instance=instance)
    pid, started = run_worker(instance, result.run_id)
    assert pid == os.getpid()                       # in-process: this process ran it
    assert worker_status(pid, started).status == WorkerStatus.RUNNING

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = worker_status(child.pid, time.time())
    assert gone.status == WorkerStatus.FAILED and f"process {child.pid} is gone" in gone.msg

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])       # exited, not yet reaped
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    dead = worker_status(zombie.pid, time.time())
    assert dead.status == WorkerStatus.FAILED and "zombie" in dead.msg, dead
    zombie.wait()

    reused = worker_status(os.getpid(), psutil.Process().create_time() - 60)   # started before us
    assert reused.status == WorkerStatus.FAILED and "newer process" in reused.msg
    assert run_worker(instance, "no-such-run") is None


def test_the_shipped_instance_uses_it_with_run_monitoring(tmp_path):
    import shutil

    from resources.run_launcher import MonitoredRunLauncher
    from resources.settings import REPO_ROOT

    shutil.copyfile(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    assert isinstance(instance.run_launcher, MonitoredRunLauncher)
    assert instance.run_launcher.supports_check_run_worker_health and instance.run_monitoring_enabled


SLOW_POOLED_RUN = """
import sys, time
import dagster as dg

@dg.asset(pool="eval")
def slow() -> int:
    print("RUNNING", flush=True)
    time.sleep(60)
    return 1

instance = dg.DagsterInstance.from_config(sys.argv[1])
dg.materialize([slow], instance=instance)
"""


@pytest.mark.parametrize("left_starting", [False, True], ids=["started", "left_starting"])
def test_a_killed_run_without_a_daemon_is_failed_and_its_pool_slot_freed(tmp_path, left_starting):
    """The in-process runner's recovery (the demo has no daemon): a run SIGKILLed while holding
    an eval-pool slot is marked FAILED and the slot is freed — else two such kills would block
    every later evaluation. Also when the kill left the run STARTING."""
    import shutil
    import signal

    from resources.run_launcher import release_dead_runs
    from resources.settings import REPO_ROOT

    shutil.copyfile(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_POOLED_RUN, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "RUNNING"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    (run,) = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.STARTED
    assert instance.event_log_storage.get_concurrency_run_ids() == {run.run_id}

    if left_starting:
        # killed between storing its run-start event and setting the run's status (the CI race)
        instance.run_storage.handle_run_event(
            run.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTING

    assert release_dead_runs(instance) == [run.run_id]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_run_ids()
    assert release_dead_runs(instance) == []


CHATTY_RUN = """
import sys
import dagster as dg

@dg.asset
def chatty(context) -> int:
    for i in range(100_000):
        context.log.info(f"event {i} " + "x" * 4000)
    return 1

dg.materialize([chatty], instance=dg.DagsterInstance.from_config(sys.argv[1]))
"""


def test_a_run_whose_instance_disk_filled_up_is_failed_once_space_is_back(tmp_path):
    """The instance on a 4 MiB tmpfs: a run that fills it cannot even record its failure and is
    left STARTED (what the issue saw). With space back, the health check the daemon runs marks
    it FAILED with the reason."""
    import shutil

    from conftest import small_tmpfs
    from resources.run_launcher import release_dead_runs
    from resources.settings import REPO_ROOT

    with small_tmpfs(tmp_path / "instance", "4m") as home:
        shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
        proc = subprocess.run([sys.executable, "-c", CHATTY_RUN, str(home)], capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode != 0 and ("disk" in proc.stderr or "full" in proc.stderr), proc.stderr[-500:]
        subprocess.run(["mount", "-o", "remount,size=64m", str(home)], check=True)
        instance = dg.DagsterInstance.from_config(str(home))
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED          # stuck: its failure was never written
        assert release_dead_runs(instance) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        (failure,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "is gone" in failure.message
