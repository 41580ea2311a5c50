"""A real `dagster dev` (webserver + daemon) with the recipe sensor and the automation sensor
running as declared: editing one parameter of one recipe file re-materializes exactly that
recipe's keep mask and curated datasets, counted from materialization events."""

import time

import dagster as dg
import pytest

from curation_graph import build_graph, cold_fill
from servers import dagster_dev
from mm_assets.taxonomy import DOMAINS
from resources.settings import REPO_ROOT

pytestmark = pytest.mark.e2e

SENSORS = """query($r: RepositorySelector!) { sensorsOrError(repositorySelector: $r) { __typename
  ... on Sensors { results { name sensorState { status ticks(limit: 1) { status timestamp } } } }
  ... on PythonError { message } } }"""
REPOSITORY = {"repositoryLocationName": "mm_curation", "repositoryName": "__repository__"}


def _sensors(dev) -> dict:
    return {s["name"]: s["sensorState"] for s in dev.graphql(SENSORS, {"r": REPOSITORY})["sensorsOrError"]["results"]}


def _wait(predicate, timeout, what, dev):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}\n{dev.log_tail()}")


def test_daemon_recomputes_exactly_what_a_recipe_edit_touches(sample_data, tmp_path):
    g = build_graph(tmp_path / "home", sample_data)
    cold_fill(g)
    env = {"MM_HOME": str(g.home), "MM_SAMPLE_DATA": str(sample_data),
           "MM_STORAGE_ROOT": str(g.home / "artifacts"), "MM_RECIPES": str(g.recipes_dir),
           "MM_EMBEDDER_MODEL": str(g.home / "siglip2"), "HF_HUB_OFFLINE": "1"}
    with dagster_dev(REPO_ROOT / "workspace.yaml", g.home / "dagster_home", cwd=REPO_ROOT, extra_env=env) as dev:
        # both sensors are declared RUNNING: no one has to switch them on
        _wait(lambda: all(_sensors(dev).get(n, {}).get("ticks") for n in ("recipe_sensor", "curation_automation")),
              180, "the first ticks of both sensors", dev)
        states = _sensors(dev)
        assert states["recipe_sensor"]["status"] == "RUNNING" and states["curation_automation"]["status"] == "RUNNING"
        time.sleep(20)                       # the first observation run and automation ticks request nothing
        before = g.counts()
        text = (g.recipes_dir / "semdedup10.yaml").read_text()
        (g.recipes_dir / "semdedup10.yaml").write_text(text.replace("target_removal: 0.10", "target_removal: 0.12"))
        expected = {("semdedup_mask", "semdedup10"): 1,
                    **{("curated_dataset", f"{d}|semdedup10"): 1 for d in DOMAINS}}

        def changed():
            after = g.counts()
            return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}

        _wait(lambda: changed() == expected, 360, f"exactly {sorted(expected)}", dev)
        time.sleep(30)                       # and nothing else follows
        assert changed() == expected
        mask = g.meta("semdedup_mask", "semdedup10")
        assert mask["image/target_removal"] == 0.12
    runs = g.instance.get_runs(dg.RunsFilter(tags={"dagster/from_automation_condition": "true"}))
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
