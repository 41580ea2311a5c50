"""LocalGraph's worker queue, as the demo and the study use it: evals started while training runs
are still queued run after them (so they fill the worker the last training run leaves idle, never
taking one from training), every started run is waited for, and stopping drops what has not
started. The worker processes are replaced by one thread running a recording stand-in for
`_worker_run` (the real one loads the code location in a spawned process)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mm_assets import local_runner
from mm_assets.local_runner import LocalGraph


@pytest.fixture
def graph(monkeypatch):
    ran: list[str] = []
    gate, running = threading.Event(), threading.Event()

    def fake_worker_run(job: str, partition: str | None):
        running.set()
        gate.wait(5)
        ran.append(f"{job}[{partition}]")
        if job == "broken_job":
            raise RuntimeError(f"{job} failed")
        return job, partition, 0.01

    monkeypatch.setattr(local_runner, "_worker_run", fake_worker_run)
    g = LocalGraph(defs=None, instance=None)
    g._pool = ThreadPoolExecutor(1)
    g.ran, g.gate, g.running = ran, gate, running
    yield g
    gate.set()
    g.stop_workers()


def test_runs_started_during_a_stage_queue_behind_it_and_are_waited_for(graph):
    started_after = []

    def after_each():
        # what the demo does after each training run: a sensor tick starting that run's evals
        n = len(started_after)
        started_after.append(n)
        graph.start_all([("eval_job", f"ckpt{n}/a"), ("eval_job", f"ckpt{n}/b")])

    graph.gate.set()
    graph.run_stage("training runs", [("training_job", r) for r in ("r0", "r1", "r2")], workers=True,
                    after_each=after_each)
    assert started_after == [0, 1, 2]
    # every training run ran before any eval, though evals were started after the first one ended
    assert graph.ran[:3] == ["training_job[r0]", "training_job[r1]", "training_job[r2]"]
    graph.wait_started()
    assert sorted(graph.ran[3:]) == sorted(f"eval_job[ckpt{n}/{x}]" for n in range(3) for x in "ab")
    assert graph.seconds["eval_job[ckpt2/b]"] == 0.01
    assert graph._started == []


def test_a_failed_started_run_raises_when_waited_for(graph):
    graph.start_all([("eval_job", "x"), ("broken_job", None)])
    graph.gate.set()
    with pytest.raises(RuntimeError, match="broken_job failed"):
        graph.wait_started()


def test_stopping_drops_runs_not_yet_started(graph):
    graph.start_all([("training_job", "r0")] + [("eval_job", str(k)) for k in range(5)])
    assert graph.running.wait(5)
    stopper = threading.Thread(target=graph.stop_workers)
    stopper.start()
    graph.gate.set()
    stopper.join(10)
    assert graph.ran == ["training_job[r0]"]          # the one running finished, the queued five never ran
