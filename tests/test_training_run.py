"""`training_run[recipe]` through the asset graph on a small generated data set: every recipe
trains from the same base model to the same token budget, checkpoints land at fixed fractions
of the budget, loss falls, the sensor registers and evaluates them, MLflow has the loss curve,
and lineage runs from an eval table back to the raw shard hashes and the base model's files."""

import dagster as dg
import mlflow
import pytest

from conftest import SMALL_BUDGET_TOKENS
from curation_graph import SHIPPED_RECIPES
from mm_assets.checkpoints import verify_checkpoint
from mm_assets.lineage import lineage
from mm_assets.taxonomy import DOMAINS

FRACTIONS = (0.5, 1.0)          # the small_graph fixture's checkpoint fractions


@pytest.fixture(scope="module")
def trained(small_graph):
    small_graph.run("training_job", "baseline")
    return small_graph


def test_every_recipe_trains_on_the_same_number_of_tokens(trained):
    seen = {r: trained.meta("training_run", r) for r in SHIPPED_RECIPES}
    for recipe, m in seen.items():
        assert m["budget_tokens"] == SMALL_BUDGET_TOKENS
        assert abs(m["tokens_seen"] - SMALL_BUDGET_TOKENS) <= 0.01 * SMALL_BUDGET_TOKENS, (recipe, m["tokens_seen"])
    # a recipe that keeps half the samples sees them about twice as often
    assert seen["ppl_top50"]["epochs_seen"] > 1.5 * seen["baseline"]["epochs_seen"]


def test_checkpoints_at_fixed_fractions_of_the_budget_from_the_base_model(trained):
    m = trained.meta("training_run", "baseline")
    assert m["loss_last_10pct"] < m["loss_first_10pct"]
    names = m["checkpoints"]
    assert len(names) == len(FRACTIONS) and all(n.startswith(m["training_run"]) for n in names)
    assert m["training_run"].startswith("baseline-seed0-") and m["seeds"] == [0]    # the resource's one seed
    assert [(r["seed"], r["training_run"], r["final"]) for r in m["runs"]] == [(0, m["training_run"], names[-1])]
    store = trained.defs.resources["checkpoints"].get()
    manifests = [verify_checkpoint(store, n) for n in names]
    curated = {d: trained.meta("curated_dataset", f"{d}|baseline")["version"] for d in DOMAINS}
    base = trained.meta("base_model")
    for fraction, man in zip(FRACTIONS, manifests):
        assert man["recipe"] == "baseline" and man["curated_versions"] == curated
        assert man["budget_tokens"] == SMALL_BUDGET_TOKENS
        assert man["tokens_seen"] >= fraction * SMALL_BUDGET_TOKENS - 0.01 * SMALL_BUDGET_TOKENS
        assert man["base_model_version"] == base["version"] and man["base_model"] == base["uri"]
        assert man["seed"] == 0
    assert manifests[0]["parent"] == base["uri"]
    assert manifests[1]["parent"].endswith(names[0])      # each checkpoint continues the previous one
    # the tiny base model's tower was pre-trained as the resource says, and says how well
    assert base["tower_pretraining"] == "40 scenes x 1 epochs"
    assert 0 <= base["tower_held_out_class_accuracy"] <= 1


def test_rematerializing_with_the_same_inputs_resumes_instead_of_retraining(trained):
    records = trained.instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("training_run"), asset_partitions=["baseline"]), limit=100).records
    first, latest = [{k: v.value for k, v in r.asset_materialization.metadata.items()}
                     for r in (records[-1], records[0])]
    assert len(records) >= 2
    assert latest["checkpoints"] == first["checkpoints"] and latest["training_run"] == first["training_run"]
    # resumed from the run's own final checkpoint, no step trained again (not a wall-clock ratio:
    # the first run was timed on a quiet machine, the second under the suite's load)
    (run,) = latest["runs"]
    assert run["resumed_from"] and run["resumed_from"].rstrip("/").endswith(first["checkpoints"][-1])
    assert run["steps_this_call"] == 0


def test_the_sensor_registers_and_evaluates_every_checkpoint_and_mlflow_has_the_curve(trained):
    names = trained.meta("training_run", "baseline")["checkpoints"]
    while trained.sensor_tick("checkpoint_sensor"):
        pass
    for n in names:
        assert trained.meta("eval_scores", f"countbench|{n}")["n"] == 4
    mlflow.set_tracking_uri(trained.defs.resources["mlflow"].tracking_uri)
    runs = [r for r in mlflow.search_runs(experiment_names=["mm-curation-training"], output_format="list")
            if r.data.tags["mm/recipe"] == "baseline"]
    first = min(runs, key=lambda r: r.info.start_time)
    steps = trained.meta("training_run", "baseline")["steps"]
    for run in runs:            # the resumed materialization logs the whole curve too
        assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")) == steps
    assert len(mlflow.MlflowClient().get_metric_history(first.info.run_id, "tokens_per_s")) == steps


def test_lineage_of_a_checkpoint_and_an_eval_table_reaches_raw_shards_and_the_base_model(trained):
    names = trained.meta("training_run", "baseline")["checkpoints"]
    while trained.sensor_tick("checkpoint_sensor"):
        pass
    st = trained.storage
    raw = {d: st.child(st.read_json(f"dagster_io/raw_shards/{d}.json")["root"]).read_json("manifest.json")
           for d in ("chart", "detection")}
    base = trained.meta("base_model")["version"]
    for target in (names[-1], f"checkpoint[{names[-1]}]", f"eval_scores[{names[-1]}/countbench]"):
        text = lineage(trained.instance, trained.defs, target)
        assert "curated_dataset[" in text and f"base_model  data version {base}" in text, text[:3000]
        for manifest in raw.values():
            for shard in manifest["shards"]:
                assert shard["sha256"][:16] in text, (target, text[:2000])
