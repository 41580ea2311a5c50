"""The ablation report: what it reads (final checkpoints per seed, per-item scores, leaked items,
ledgers) and the asset on the small graph, where baseline, the oracle and a single-step recipe
are trained and their final checkpoints evaluated."""

import json

import polars as pl
import pytest

from mm_assets.storage import Storage
from mm_assets.study.collect import collect_scores, complete_runs, final_checkpoints, mark_leaked, removed_by_step


def test_final_checkpoints_one_row_per_recipe_and_seed():
    runs = {"baseline": {"checkpoints": ["b0-s1", "b0-s2", "b1-s1", "b1-s2"],
                         "runs": [{"seed": 0, "final": "b0-s2", "tokens_seen": 100},
                                  {"seed": 1, "final": "b1-s2", "tokens_seen": 101}]},
            "old": {"checkpoints": ["o-s1", "o-s2"], "tokens_seen": 99}}   # stored before seeds
    assert final_checkpoints(runs) == [
        {"recipe": "baseline", "seed": 0, "checkpoint": "b0-s2", "tokens_seen": 100},
        {"recipe": "baseline", "seed": 1, "checkpoint": "b1-s2", "tokens_seen": 101},
        {"recipe": "old", "seed": 0, "checkpoint": "o-s2", "tokens_seen": 99}]


def test_missing_evals_are_listed_and_incomplete_runs_left_out():
    finals = [{"recipe": "baseline", "seed": 0, "checkpoint": "a", "tokens_seen": 1},
              {"recipe": "v1", "seed": 0, "checkpoint": "b", "tokens_seen": 1}]
    table = pl.DataFrame({"item_id": ["1", "2"], "score": [1.0, 0.0]})
    have = {("a", "docvqa"), ("a", "chartqa"), ("b", "docvqa")}
    scores, missing = collect_scores(finals, ["docvqa", "chartqa"],
                                     lambda ck, bench: table if (ck, bench) in have else None)
    assert missing == [{"recipe": "v1", "seed": 0, "benchmark": "chartqa", "checkpoint": "b"}]
    kept = complete_runs(scores)
    assert kept["recipe"].unique().to_list() == ["baseline"] and kept.height == 4


def test_leaked_items_are_marked_by_question_id_or_row():
    scores = pl.DataFrame({"benchmark": ["docvqa", "docvqa", "chartqa", "chartqa", "pixmo_points"],
                           "item_id": ["49007", "49010", "chartqa-00003", "chartqa-00004",
                                       "pixmo_points-0123456789ab-00003"]})
    truth = {"leaked_eval_items": [{"benchmark": "docvqa", "item_id": 49007, "row_index": 2},
                                   {"benchmark": "chartqa", "item_id": 3, "row_index": 3},
                                   {"benchmark": "pixmo_points", "item_id": 3, "row_index": 3}]}
    assert mark_leaked(scores, truth)["leaked"].to_list() == [True, False, True, False, True]
    assert not mark_leaked(scores, None)["leaked"].any()


def test_removals_come_from_each_recipes_ledger():
    ledger = pl.DataFrame({"sample_id": ["x", "y", "x", "y"], "step": ["semdedup", "semdedup", "curated", "curated"],
                           "decision": ["drop", "keep", "drop", "keep"]})
    assert removed_by_step({"v1": ledger}).rows() == [("v1: semdedup", "x")]


@pytest.fixture(scope="module")
def report(small_graph):
    g = small_graph
    finals = {}
    for recipe in ("baseline", "oracle", "semdedup10"):
        run = g.meta("training_run", recipe)["runs"]
        finals[recipe] = run[0]["final"]
        g.evaluate_checkpoint(finals[recipe], benchmarks=["countbench"])
    g.run("ablation_report_job")
    m = g.meta("ablation_report")
    return g, m, json.loads(Storage(m["uri"]).read_bytes("report.json")), finals


def test_the_report_compares_each_recipe_to_baseline_and_the_oracle(report):
    g, m, rep, finals = report
    ab = rep["ablation"]
    assert {"baseline", "oracle", "semdedup10"} <= set(ab["recipes"]) and ab["oracle"] == "oracle"
    assert ab["benchmarks"] == ["countbench"] and ab["n_boot"] == 2000
    row = next(r for r in ab["rows"] if r["recipe"] == "semdedup10")
    assert row["n_seeds"] == 1 and row["n_items"] == 4
    assert row["delta_lo"] <= row["delta"] <= row["delta_hi"]
    assert row["gap_status"] in ("established", "oracle gap not established", "oracle below baseline")
    assert "oracle (reads planted truth)" in m["recipes"]["oracle"]
    assert "semdedup10" in m["delta_points"] and m["plot"].startswith("![ablation](data:image/png;base64,")
    assert {r["checkpoint"] for r in rep["runs"]} >= set(finals.values())


def test_the_oracle_removes_every_planted_defect_and_nothing_else(report):
    g, m, rep, finals = report
    oracle = [r for r in rep["removals"] if r["step"] == "oracle: oracle"]
    assert oracle and all(r["recall"] == 1.0 for r in oracle if r["defect_kind"] != "none")
    assert next(r for r in oracle if r["defect_kind"] == "none")["n_removed"] == 0
