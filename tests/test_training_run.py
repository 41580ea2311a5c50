"""`training_run[recipe]` through the asset graph on a small generated data set: it trains on
the recipe's curated versions, loss falls, one sealed checkpoint per epoch lands in the store,
the sensor registers and evaluates them, MLflow has the loss curve, and lineage runs from an
eval table back to the raw shard hashes."""

import mlflow
import pytest

from mm_assets.checkpoints import verify_checkpoint
from mm_assets.lineage import lineage
from mm_assets.taxonomy import DOMAINS

EPOCHS = 2          # the small_graph fixture's training setting


@pytest.fixture(scope="module")
def trained(small_graph):
    small_graph.run("training_job", "baseline")
    return small_graph


def test_loss_falls_and_one_sealed_checkpoint_per_epoch(trained):
    m = trained.meta("training_run", "baseline")
    assert m["loss_last_10pct"] < m["loss_first_10pct"]
    names = m["checkpoints"]
    assert len(names) == EPOCHS and all(n.startswith(m["training_run"]) for n in names)
    store = trained.defs.resources["checkpoints"].get()
    manifests = [verify_checkpoint(store, n) for n in names]
    curated = {d: trained.meta("curated_dataset", f"{d}|baseline")["version"] for d in DOMAINS}
    for epoch, man in enumerate(manifests, start=1):
        assert man["epoch"] == epoch and man["recipe"] == "baseline"
        assert man["curated_versions"] == curated
    assert manifests[1]["parent"].endswith(names[0])      # each epoch continues the previous one


def test_rematerializing_with_the_same_inputs_resumes_instead_of_retraining(trained):
    first = trained.meta("training_run", "baseline")
    trained.run("training_job", "baseline")
    again = trained.meta("training_run", "baseline")
    assert again["checkpoints"] == first["checkpoints"] and again["training_run"] == first["training_run"]
    assert again["seconds"] < first["seconds"] / 2


def test_the_sensor_registers_and_evaluates_every_checkpoint_and_mlflow_has_the_curve(trained):
    names = trained.meta("training_run", "baseline")["checkpoints"]
    while trained.sensor_tick("checkpoint_sensor"):
        pass
    for n in names:
        assert trained.meta("eval_scores", f"countbench|{n}")["n"] == 4
    mlflow.set_tracking_uri(trained.defs.resources["mlflow"].tracking_uri)
    runs = mlflow.search_runs(experiment_names=["mm-curation-training"], output_format="list")
    first = min((r for r in runs if r.data.tags["mm/recipe"] == "baseline"), key=lambda r: r.info.start_time)
    steps = trained.meta("training_run", "baseline")["steps"]
    for run in runs:            # the resumed materialization logs the whole curve too
        assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")) == steps
    assert len(mlflow.MlflowClient().get_metric_history(first.info.run_id, "tokens_per_s")) == steps


def test_lineage_of_a_checkpoint_and_an_eval_table_reaches_raw_shard_hashes(trained):
    names = trained.meta("training_run", "baseline")["checkpoints"]
    while trained.sensor_tick("checkpoint_sensor"):
        pass
    st = trained.storage
    raw = {d: st.child(st.read_json(f"dagster_io/raw_shards/{d}.json")["root"]).read_json("manifest.json")
           for d in ("chart", "detection")}
    for target in (names[-1], f"checkpoint[{names[-1]}]", f"eval_scores[{names[-1]}/countbench]"):
        text = lineage(trained.instance, trained.defs, target)
        assert "curated_dataset[" in text
        for manifest in raw.values():
            for shard in manifest["shards"]:
                assert shard["sha256"][:16] in text, (target, text[:2000])
