"""Evaluation through the asset graph: tiny random LLaVA checkpoints evaluated, predictions
tables, MLflow runs with lineage, leaderboard. (The eval pool under a real daemon, ten
checkpoints at once, is tests/test_checkpoint_sensor_e2e.py.)"""

import json
import os
import shutil

import dagster as dg
import mlflow
import pytest

from mm_assets.checkpoints import IncompleteCheckpoint, MARKER, verify_checkpoint
from mm_assets.definitions import build_definitions
from mm_assets.local_runner import LocalGraph
from mm_assets.partitions import checkpoint_partitions
from mm_assets.storage import Storage
from mm_assets.vlm.random_checkpoint import write_random_checkpoint

N_CHECKPOINTS = 6
POOL_LIMIT = 2
CHECKPOINTS = [f"tiny-step{100 * i}" for i in range(N_CHECKPOINTS)]


@pytest.fixture(scope="module")
def evals(sample_data, tmp_path_factory):
    home = tmp_path_factory.mktemp("evalhome")
    env = {"MM_HOME": str(home), "MM_SAMPLE_DATA": str(sample_data), "MM_EVAL_MAX_ITEMS": "24",
           "MM_EVAL_BATCH_SIZE": "8", "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        store = home / "checkpoints"
        write_random_checkpoint(store / CHECKPOINTS[0], ["How many circles are there?", "What is the title?"] * 50,
                                seed=0, training_run="run-a", step=0)
        for i, name in enumerate(CHECKPOINTS[1:], start=1):   # same weights, new manifests (step)
            shutil.copytree(store / CHECKPOINTS[0], store / name)
            manifest = json.loads((store / name / "manifest.json").read_text())
            from mm_assets.checkpoints import seal_local_checkpoint
            (store / name / "manifest.json").unlink()
            (store / name / MARKER).unlink()
            seal_local_checkpoint(store / name, dict(manifest, step=100 * i, epoch=i))
        dagster_home = home / "dagster_home"
        dagster_home.mkdir()
        with dg.instance_for_test(temp_dir=str(dagster_home),
                                  overrides={"concurrency": {"pools": {"default_limit": POOL_LIMIT}}}) as instance:
            defs = build_definitions()
            g = LocalGraph(defs, instance)
            g.run("source_job")
            g.run("eval_sets_job", "countbench")
            instance.add_dynamic_partitions(checkpoint_partitions.name, CHECKPOINTS)
            for name in CHECKPOINTS:
                g.run("checkpoint_job", name)
                g.run("eval_job", dg.MultiPartitionKey({"checkpoint": name, "benchmark": "countbench"}))
            yield home, g, dict(os.environ, DAGSTER_HOME=str(dagster_home))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_predictions_table_and_interval(evals):
    home, g, _ = evals
    m = g.meta("eval_scores", dg.MultiPartitionKey({"checkpoint": CHECKPOINTS[0], "benchmark": "countbench"}))
    root = m["uri"]
    preds = Storage(root).read_parquet("predictions.parquet")
    assert preds.columns[:6] == ["item_id", "prompt_hash", "prompt", "raw_output", "parsed", "score"]
    assert preds.height == m["n"] == 24
    assert preds["prompt_hash"].n_unique() == preds["prompt"].n_unique()
    assert m["ci95_low"] <= m["score"] <= m["ci95_high"]
    assert m["prompt_version"] and m["metric_version"] and m["model_id"]


def test_every_eval_is_an_mlflow_run_with_lineage_tags(evals):
    home, g, _ = evals
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["mm-curation-evals"],
                              filter_string=f"tags.`mm/checkpoint` = '{CHECKPOINTS[3]}'", output_format="list")
    assert len(runs) == 1
    run = runs[0]
    m = g.meta("eval_scores", dg.MultiPartitionKey({"checkpoint": CHECKPOINTS[3], "benchmark": "countbench"}))
    assert run.info.run_id == m["mlflow_run_id"]
    assert run.data.tags["mm/lineage/training_run"] == "run-a" and run.data.tags["mm/lineage/step"] == "300"
    assert run.data.tags["dagster/run_id"]
    assert run.data.params["benchmark"] == "countbench" and run.data.params["prompt_version"]
    assert abs(run.data.metrics["score"] - m["score"]) < 1e-12
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)]
    assert "predictions.parquet" in artifacts


def test_the_same_checkpoint_content_is_generated_once(evals):
    """The six checkpoints share their weights (only their manifests differ): the first is
    generated, the others reuse its predictions — each still gets its own record and MLflow run
    with its own lineage — and evaluating the first again generates nothing and logs nothing."""
    home, g, _ = evals
    metas = [g.meta("eval_scores", dg.MultiPartitionKey({"checkpoint": n, "benchmark": "countbench"}))
             for n in CHECKPOINTS]
    assert metas[0]["generated_items"] == 24 and not metas[0]["reused"]
    assert all(m["reused"] and m["generated_items"] == 0 and m["score"] == metas[0]["score"] for m in metas[1:])
    assert len({m["mlflow_run_id"] for m in metas}) == N_CHECKPOINTS
    g.run("eval_job", dg.MultiPartitionKey({"checkpoint": CHECKPOINTS[0], "benchmark": "countbench"}))
    again = g.meta("eval_scores", dg.MultiPartitionKey({"checkpoint": CHECKPOINTS[0], "benchmark": "countbench"}))
    assert again["reused"] and again["generated_items"] == 0 and again["mlflow_run_id"] == metas[0]["mlflow_run_id"]


def test_leaderboard_has_every_checkpoint_and_a_plot(evals):
    home, g, _ = evals
    g.run("leaderboard_job")
    m = g.meta("leaderboard")
    table = Storage(m["uri"]).read_parquet("leaderboard.parquet")
    assert sorted(table["checkpoint"].to_list()) == sorted(CHECKPOINTS)
    assert table["step"].to_list() == [100 * i for i in range(N_CHECKPOINTS)]
    assert (home / "artifacts").exists() and Storage(m["uri"]).exists("score_vs_tokens.png")
    assert "score_vs_tokens" in m


def test_an_incomplete_checkpoint_is_refused(evals, tmp_path):
    home, _, _ = evals
    shutil.copytree(home / "checkpoints" / CHECKPOINTS[0], tmp_path / "partial")
    (tmp_path / "partial" / MARKER).unlink()
    with pytest.raises(IncompleteCheckpoint, match="no COMPLETE marker"):
        verify_checkpoint(Storage(str(tmp_path)), "partial")
    shutil.copytree(home / "checkpoints" / CHECKPOINTS[0], tmp_path / "tampered")
    (tmp_path / "tampered" / "config.json").write_text("{}")
    with pytest.raises(IncompleteCheckpoint, match="config.json: sha256"):
        verify_checkpoint(Storage(str(tmp_path)), "tampered")
