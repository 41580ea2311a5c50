"""The demo graph on an S3-compatible object store: artifacts (`MM_STORAGE_ROOT`), checkpoints
(`MM_CHECKPOINTS`) and MLflow's artifacts (`MM_MLFLOW_ARTIFACTS`) in a bucket of moto's S3 server
on loopback, started and stopped here, configured through the environment as a deployment is.
The same small graph is filled twice, on local disk and on S3 — ingest, every curation step's
scores and decisions, curated datasets, the base model, training, the checkpoint sensor's evals,
the leaderboard and the ablation report — and every asset of the code location (but the mixing
group's) materializes on S3 with, partition by partition, the local run's data version: versions
are content hashes, never locations.

Sized as small as the mechanism allows: the small data, baseline and v2 (v1, which composes
every curation step, then MM-GEN: so every score asset is needed), a 10 000-token budget with one checkpoint per
run, evals on one benchmark's first 4 items.
"""

import json

import dagster as dg
import pytest

from curation_graph import TEST_TOWER, build_graph
from resources.evaluation import CheckpointStoreResource, EvalBackendResource
from resources.settings import checkpoint_store_resource, mlflow_resource, storage_resource
from resources.training import TrainingResource
from servers import moto_s3_server

# e2e too: tests/run_suite.sh runs it in a lane of the real-server tests, beside the
# daemon tests that mostly wait, rather than in the niced rest process (the suite's longest path)
pytestmark = [pytest.mark.s3, pytest.mark.e2e]

RECIPES = ("baseline", "study/v2")      # v2: every step of v1, then MM-GEN
BENCHMARK = "countbench"
BUCKET = "mm-graph"


def _sized(checkpoints: CheckpointStoreResource) -> dict:
    return {"training": TrainingResource(budget_tokens=10_000, checkpoint_fractions=[1.0], batch_size=4, max_len=384,
                                         lr=3e-3, warmup=2, **TEST_TOWER),
            "checkpoints": checkpoints, "eval_backend": EvalBackendResource(batch_size=8, max_items=4)}


def _fill(g) -> dict[tuple[str, str | None], str]:
    """Everything, as the demo does it: the fill, the checkpoint sensor until it requests nothing
    more, the leaderboard and the ablation report; then the latest data version of every
    materialized asset partition."""
    assert g.fill(eval_sets=True, train=True) == {}
    while g.sensor_tick("checkpoint_sensor"):
        pass
    g.run("leaderboard_job")
    g.run("ablation_report_job")
    versions = {}
    for key in g.defs.resolve_asset_graph().materializable_asset_keys:
        for record in g.instance.fetch_materializations(key, limit=10_000).records:     # newest first
            versions.setdefault((key.to_user_string(), record.partition_key),
                                record.asset_materialization.tags["dagster/data_version"])
    return versions


def _curation_assets(g) -> list[dg.AssetKey]:
    """Every asset but the mixing group's (domain experts and their soups: more training runs than
    this test's budget holds; they store through the same storage and checkpoint store)."""
    graph = g.defs.resolve_asset_graph()
    return [key for key in graph.materializable_asset_keys if graph.get(key).group_name != "mixing"]


def _every_partition(g) -> set[tuple[str, str | None]]:
    """Every partition of every asset — evals only on the benchmark the sensor evaluates on."""
    return {(key.to_user_string(), None if p is None else str(p))
            for key in _curation_assets(g)
            for p in g.partition_keys(key.to_user_string())
            if key.to_user_string() != "eval_scores" or str(p).startswith(f"{BENCHMARK}|")}


def _objects(server) -> list[str]:
    client, keys = server.client(), []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


@pytest.mark.timeout(1500)      # two fills; ≈ 4 min alone, the suite runs it beside three other processes
def test_the_demo_graph_on_s3_materializes_every_asset_with_the_local_runs_data_versions(
        small_data, tmp_path, monkeypatch):
    local_home = tmp_path / "local"
    local = build_graph(local_home, small_data, recipes=RECIPES, **_sized(
        CheckpointStoreResource(root=str(local_home / "checkpoints"), evaluate_on=[BENCHMARK])))
    want = _fill(local)

    home = tmp_path / "s3"
    with moto_s3_server() as s3:
        s3.create_bucket(BUCKET)
        # as the README says: the endpoint in the storage options, credentials in the AWS variables
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for name, value in {"MM_HOME": str(home), "MM_STORAGE_ROOT": f"s3://{BUCKET}/artifacts",
                            "MM_STORAGE_OPTIONS": json.dumps({"endpoint_url": s3.endpoint_url}),
                            "MM_CHECKPOINTS": f"s3://{BUCKET}/checkpoints", "MM_EVAL_ON_REGISTER": BENCHMARK,
                            "MM_MLFLOW_ARTIFACTS": f"s3://{BUCKET}/mlruns", "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
                            "AWS_ACCESS_KEY_ID": s3.key, "AWS_SECRET_ACCESS_KEY": s3.secret,
                            "AWS_DEFAULT_REGION": s3.region}.items():
            monkeypatch.setenv(name, value)
        remote = build_graph(home, small_data, recipes=RECIPES, storage=storage_resource(), mlflow=mlflow_resource(),
                             **_sized(checkpoint_store_resource()))
        got = _fill(remote)
        objects = _objects(s3)

    # every asset, every partition (recipes, domains, benchmarks, both runs' checkpoints), both runs
    expected = _every_partition(remote)
    assert {asset for asset, _ in expected} == {k.to_user_string() for k in _curation_assets(remote)}
    assert len([p for a, p in expected if a == "checkpoint"]) == len(RECIPES)
    assert set(got) == expected, (sorted(expected - set(got)), sorted(set(got) - expected))
    assert set(want) == expected, (sorted(expected - set(want)), sorted(set(want) - expected))
    assert {k: (want[k], got[k]) for k in expected if got[k] != want[k]} == {}

    # nothing of it on the local disk: artifacts, checkpoints and MLflow's artifacts are objects
    assert not any((home / d).exists() for d in ("artifacts", "checkpoints", "mlruns"))
    assert {k.split("/", 1)[0] for k in objects} == {"artifacts", "checkpoints", "mlruns"}
    for asset, name in expected:
        if asset == "checkpoint":
            assert f"checkpoints/{name}/COMPLETE" in objects
    assert len([k for k in objects if k.startswith("mlruns/") and k.endswith("/predictions.parquet")]) == len(RECIPES)
