"""The command line's console: one permanent line per stage, long work shown beside the live bar
and redrawn in place (no new lines) at least every heartbeat, progress from worker processes
arriving through the queue, the project's deliberate Dagster beta APIs silent while other
warnings still show, and the closing tables with the JSON written to a file."""

import io
import json
import multiprocessing
import time
import warnings

import dagster as dg
import pytest

from mm_assets import progress
from mm_assets.console import StageConsole, listen_in_worker, worker_channel
from mm_assets.summary_tables import print_summary, scores_table


def test_no_listener_makes_every_call_a_no_op(capsys):
    assert not progress.listening()
    with progress.stage("ingest", total=3, unit="runs") as stage, progress.task("x", total=5) as task:
        stage.advance()
        task.advance(2, loss=1.0)
        task.set(3, 5)
    assert capsys.readouterr().out == ""


def test_a_stage_leaves_one_line_and_its_tasks_are_redrawn_in_place():
    out = io.StringIO()
    with StageConsole(stream=out, heartbeat=0.05) as console:
        with progress.stage("embedder", total=1, unit="runs") as stage:
            with progress.task("training", total=240, unit="steps") as task:
                for _ in range(3):
                    task.advance(loss=0.8125)
                time.sleep(0.2)          # the heartbeat redraws while nothing reports
            stage.advance()
        with progress.stage("embeddings", total=8, unit="runs") as stage:
            for _ in range(8):
                stage.advance()
        progress.note("sample data: reusing /x")
    text = out.getvalue()
    lines = text.split("\n")
    finished = [line for line in lines if "✓" in line]
    assert len(finished) == 2, text
    assert "embedder" in finished[0] and "1/1 runs" in finished[0]
    assert "embeddings" in finished[1] and "8/8 runs" in finished[1]
    assert "training 3/240 steps loss 0.812" in text
    assert "sample data: reusing /x" in text
    # the live bar redraws with carriage returns: the only new lines are the permanent ones
    assert console.lines == 3 and text.count("\n") == 3, repr(text)
    assert text.count("\r") >= 3


def _worker(q):
    listen_in_worker(q)
    with progress.task("baseline-seed0", unit="steps") as task:
        task.set(40, 250, loss=1.5)
        task.set(41, 250, loss=1.25)
        time.sleep(0.5)                  # the parent's heartbeat draws it


def test_progress_from_a_spawned_worker_reaches_the_console():
    out = io.StringIO()
    context = multiprocessing.get_context("spawn")
    seen = []
    with StageConsole(stream=out, heartbeat=0.05) as console:
        original = console.__call__
        progress.listen(lambda e: (seen.append(e), original(e)))
        with progress.stage("training runs", total=1, unit="runs") as stage:
            channel = worker_channel(context)
            proc = context.Process(target=_worker, args=(channel.queue,))
            proc.start()
            proc.join(60)
            assert proc.exitcode == 0
            channel.close()
            stage.advance()
    kinds = [e[0] for e in seen if e[1] is not None and e[1][0] == proc.pid]
    assert kinds == ["task", "set", "set", "end"], seen
    assert "baseline-seed0 41/250 steps loss 1.25" in out.getvalue()


def test_no_worker_channel_without_a_listener():
    assert worker_channel(multiprocessing.get_context("spawn")) is None


def test_deliberate_beta_apis_are_silent_other_warnings_still_show():
    import importlib

    import mm_assets
    from dagster_shared.utils.warnings import beta_warning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.reload(mm_assets)          # its filters in front again, as at a fresh import
        dg.Output(1, data_version=dg.DataVersion("x"))
        dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="domain")
        beta_warning("Function `something_else`")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith("Function `something_else`"), messages


@pytest.fixture
def ablation_rows():
    rows = []
    for recipe, delta, lo, hi in (("baseline", 0.0, 0.0, 0.0), ("v1", 0.023, 0.001, 0.045),
                                  ("oracle", 0.0, -0.012, 0.012)):
        for bench in ("countbench", "docvqa", "chartqa", "realworldqa", "pixmo_points", "average over benchmarks"):
            rows.append({"recipe": recipe, "benchmark": bench, "mean": 0.1 + delta, "delta": delta,
                         "delta_lo": lo, "delta_hi": hi, "gap_recovered": None,
                         "gap_status": "oracle gap not established"})
    return rows


def test_summary_tables_fit_a_screen_and_the_json_goes_to_a_file(tmp_path, ablation_rows):
    from rich.console import Console

    out = io.StringIO()
    summary = {"ablation": ablation_rows, "seconds": {"fill": 1.0}}
    print_summary([scores_table(ablation_rows, "Final checkpoints")], summary, tmp_path / "summary.json",
                  ["Open the UI with:  make ui"], console=Console(file=out, width=120))
    text = out.getvalue()
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert f"Full summary (JSON): {tmp_path / 'summary.json'}" in text
    assert "+2.3 [+0.1, +4.5]" in text and "reference" in text and "oracle gap not established" in text
    assert max(len(line) for line in text.splitlines()) <= 120
    assert len(text.splitlines()) < 25


def test_stage_times_round_before_splitting_minutes():
    from mm_assets.console import _seconds
    assert [_seconds(s) for s in (12.34, 59.96, 109.4, 179.6, 3599.7)] == [
        "12.3 s", "1 min 00 s", "1 min 49 s", "3 min 00 s", "60 min 00 s"]
