"""A real `dagster dev` (webserver + daemon) on a persistent instance, every sensor as declared
(none switched on by hand), starting from a graph filled, trained and evaluated in-process —
what `make demo` leaves behind:

1. the daemon redoes nothing: no checkpoint registered again, no eval requested or generated —
   and a comment-only recipe edit made before it started (observed by its first tick) makes
   nothing run either;
2. editing `ppl_top50`'s keep fraction materializes exactly its perplexity decisions, its 8
   curated datasets, its training run, each new checkpoint, each new checkpoint's eval tables
   and the leaderboard and the ablation report — nothing of another recipe, no score asset. Counted
   from the event log. To keep the suite in its budget the checkpoint sensor evaluates on one
   benchmark (`MM_EVAL_ON_REGISTER`, as a deployment may set it); requesting every benchmark is
   covered by test_checkpoint_sensor.py.

The instance is a parameter: PostgreSQL (deploy/dagster-postgres.yaml on a server started by the
test; the in-process fill, `dagster dev`'s webserver and daemon and every run worker share its
database) or the SQLite files of the repo's dagster.yaml. The test takes minutes, so one backend
runs by default: Postgres where its binaries are installed (CI requires them), else SQLite; the
SQLite instance's daemon is exercised by the other e2e tests. MM_E2E_SQLITE=1 runs both.
"""

import os
import time

import dagster as dg
import pytest

from curation_graph import TEST_TOWER, build_graph
from mm_assets.taxonomy import DOMAINS
from resources.evaluation import CheckpointStoreResource, EvalBackendResource
from resources.settings import REPO_ROOT
from resources.training import TrainingResource
from servers import dagster_dev, postgres_bin_dir, postgres_server

pytestmark = pytest.mark.e2e

BUDGET, FRACTIONS = 20_000, (1.0,)      # one checkpoint per run
BENCHMARK = "countbench"               # the one benchmark each new checkpoint is evaluated on
SENSORS = """query($r: RepositorySelector!) { sensorsOrError(repositorySelector: $r) { __typename
  ... on Sensors { results { name sensorState { status ticks(limit: 50) { status timestamp } } } }
  ... on PythonError { message } } }"""
REPOSITORY = {"repositoryLocationName": "mm_curation", "repositoryName": "__repository__"}


@pytest.fixture(params=["postgres", "sqlite"])
def instance_yaml(request, monkeypatch):
    """The dagster.yaml of the test's instance and the prefix of its storage classes' names; for
    Postgres, with its DAGSTER_PG_* variables set here (the in-process graph) and inherited by
    `dagster dev` and its run workers."""
    if request.param == "sqlite":
        if postgres_bin_dir() is not None and os.environ.get("MM_E2E_SQLITE") != "1":
            pytest.skip("the recipe flow runs on the Postgres instance here (MM_E2E_SQLITE=1 to run it on SQLite too)")
        yield REPO_ROOT / "dagster.yaml", "Sqlite"
        return
    with postgres_server(db="dagster") as pg:
        for name, value in pg.dagster_env().items():
            monkeypatch.setenv(name, value)
        yield REPO_ROOT / "deploy" / "dagster-postgres.yaml", "Postgres"


def _sensors(dev) -> dict:
    return {s["name"]: s["sensorState"] for s in dev.graphql(SENSORS, {"r": REPOSITORY})["sensorsOrError"]["results"]}


def _wait(predicate, timeout, what, dev):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(3)
    raise AssertionError(f"timed out waiting for {what}\n{dev.log_tail()}")


def _runs_by_job(instance) -> dict[str, int]:
    out: dict[str, int] = {}
    for run in instance.get_runs():
        name = run.job_name if not run.job_name.startswith("__") else "automation:" + ",".join(
            sorted(k.to_user_string() for k in (run.asset_selection or [])))
        out[name] = out.get(name, 0) + 1
    return out


@pytest.mark.timeout(2700)     # 6-9 min alone; the suite runs it beside four other processes
def test_a_recipe_edit_flows_to_training_evals_and_the_leaderboard_and_nothing_else(small_data, tmp_path,
                                                                                    instance_yaml):
    home, (yaml_path, storage) = tmp_path / "home", instance_yaml
    g = build_graph(home, small_data, recipes=("baseline", "ppl_top50"), instance_yaml=yaml_path,
                    training=TrainingResource(budget_tokens=BUDGET, checkpoint_fractions=list(FRACTIONS), **TEST_TOWER),
                    checkpoints=CheckpointStoreResource(root=str(home / "checkpoints"), evaluate_on=[BENCHMARK]),
                    eval_backend=EvalBackendResource(batch_size=8, max_items=4))
    assert type(g.instance.run_storage).__name__.startswith(storage)
    assert type(g.instance.event_log_storage).__name__.startswith(storage)
    assert g.fill(eval_sets=True, train=True) == {}
    while g.sensor_tick("checkpoint_sensor"):
        pass
    g.run("leaderboard_job")
    g.run("ablation_report_job")
    old_final = g.meta("training_run", "ppl_top50")["checkpoints"][-1]
    env = {"MM_HOME": str(home), "MM_SAMPLE_DATA": str(small_data), "MM_STORAGE_ROOT": str(home / "artifacts"),
           "MM_RECIPES": str(g.recipes_dir), "MM_EMBEDDER_MODEL": str(home / "siglip2"), "HF_HUB_OFFLINE": "1",
           "MM_TRAIN_BUDGET_TOKENS": str(BUDGET), "MM_TRAIN_CHECKPOINTS": ",".join(map(str, FRACTIONS)),
           "MM_EVAL_MAX_ITEMS": "4", "MM_EVAL_BATCH_SIZE": "8", "MM_EVAL_ON_REGISTER": BENCHMARK}
    # (MM_TOWER_SCENES / MM_TOWER_EPOCHS, which TEST_TOWER reads, reach dagster dev from conftest's environment)
    filled, runs_filled = g.counts(), _runs_by_job(g.instance)
    path = g.recipes_dir / "ppl_top50.yaml"
    original = path.read_text()
    path.write_text("# tuned by hand\n" + original + "\n")      # a comment: no section hash changes

    with dagster_dev(REPO_ROOT / "workspace.yaml", home / "dagster_home", cwd=REPO_ROOT, extra_env=env) as dev:
        # 1. every sensor RUNNING as declared; several ticks of each redo nothing of the demo's work
        names = ("recipe_sensor", "curation_automation", "checkpoint_sensor")
        _wait(lambda: all(len(_sensors(dev).get(n, {}).get("ticks") or []) >= 3 for n in names), 600,
              "three ticks of every sensor", dev)
        assert all(_sensors(dev)[n]["status"] == "RUNNING" for n in names)
        _wait(lambda: all(r.is_finished for r in g.instance.get_runs()), 300, "the recipe observation run", dev)
        new_runs = {k: v - runs_filled.get(k, 0) for k, v in _runs_by_job(g.instance).items()
                    if v != runs_filled.get(k, 0)}
        assert new_runs == {"observe_recipes_job": 1}, new_runs        # no registration, no eval
        assert g.counts() == filled

        # 2. the keep fraction: the recipe's chain, to the leaderboard
        path.write_text(original.replace("keep_fraction: 0.5", "keep_fraction: 0.4"))
        edited = time.time()

        def trained():
            m = g.meta("training_run", "ppl_top50")
            return m["checkpoints"] if m["checkpoints"][-1] != old_final else None

        _wait(trained, 1200, "training_run[ppl_top50] on the new curated datasets", dev)
        new_checkpoints = trained()
        print(f"edit -> training_run[ppl_top50]: {time.time() - edited:.0f} s")
        assert len(new_checkpoints) == len(FRACTIONS)
        evals = {(BENCHMARK, c) for c in new_checkpoints}

        def leaderboard_current():
            after = g.counts()
            if not all(after.get(("eval_scores", f"{b}|{c}"), 0) for b, c in evals):
                return False
            return g.meta("leaderboard")["final_checkpoints"].get("ppl_top50", {}).get("checkpoint") == \
                new_checkpoints[-1]

        _wait(leaderboard_current, 900, "every new eval and a leaderboard that compares them", dev)
        print(f"edit -> evals and leaderboard: {time.time() - edited:.0f} s")
        # the ablation report follows the eval tables too
        _wait(lambda: g.counts().get(("ablation_report", None), 0) > filled.get(("ablation_report", None), 0),
              600, "an ablation report after the new evals", dev)
        time.sleep(20)                      # and nothing else follows
        # every run ends before dagster dev stops: a run's last materialization comes before its
        # end, and stopping dagster dev in between would interrupt it (marked FAILURE below)
        _wait(lambda: all(r.is_finished for r in g.instance.get_runs()), 300, "every run to end", dev)
        after = g.counts()

    delta = {k: after[k] - filled.get(k, 0) for k in after if after[k] != filled.get(k, 0)}
    leaderboards = delta.pop(("leaderboard", None))
    assert leaderboards >= 1 and delta.pop(("ablation_report", None)) >= 1
    assert delta == {("perplexity_decisions", "ppl_top50"): 1,
                     **{("curated_dataset", f"{d}|ppl_top50"): 1 for d in DOMAINS},
                     ("training_run", "ppl_top50"): 1,
                     **{("checkpoint", c): 1 for c in new_checkpoints},
                     **{("eval_scores", f"{b}|{c}"): 1 for b, c in evals}}
    m = g.meta("training_run", "ppl_top50")
    assert abs(m["tokens_seen"] - BUDGET) <= 0.01 * BUDGET
    board = g.meta("leaderboard")
    assert "ppl_top50" in board["vs_baseline_at_equal_compute"]
    for run in g.instance.get_runs(dg.RunsFilter(tags={"dagster/from_automation_condition": "true"})):
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
    print(f"leaderboard materializations after the edit: {leaderboards}")
