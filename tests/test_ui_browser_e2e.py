"""The Dagster UI and the MLflow UI driven in a real browser (Playwright on Debian's chromium)
against a real `dagster dev` and `mlflow server` on a home that holds real content: the
`source`, two benchmarks' `eval_sets`, and a checkpoint the checkpoint sensor registered and
evaluated (so MLflow has eval runs).

What a person sees, step by step, with a screenshot each (kept in `.test-logs/screenshots/`,
or `MM_SCREENSHOTS`; the paths are printed):
1. the global asset lineage shows every asset group of the Definitions, and no other;
2. a per-domain backfill of `raw_shards` + `samples` for two domains, launched by clicking
   through the Materialize dialog (assets ticked in the catalog, partitions picked in the
   partition selector, "Launch backfill"), completes (polled through GraphQL);
3. the asset pages show exactly those two partitions as materialized;
4. the checkpoint sensor is listed on the automation page and is running;
5. the MLflow UI lists the checkpoint's eval runs (one per benchmark) and one run's page shows
   its lineage tags (checkpoint, checkpoint data version, training run, recipe, curated
   versions, the Dagster run).

Skipped when chromium (or Playwright) is missing, unless MM_REQUIRE_BROWSER=1 (CI), where it
fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from mm_assets.definitions import build_definitions
from mm_assets.local_runner import LocalGraph
from mm_assets.partitions import checkpoint_benchmark_partitions
from mm_assets.taxonomy import DOMAINS
from mm_assets.vlm.random_checkpoint import write_random_checkpoint
from resources.settings import REPO_ROOT
from servers import dagster_dev, mlflow_server

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("MM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(os.environ.get("MM_SCREENSHOTS") or REPO_ROOT / ".test-logs" / "screenshots")
BACKFILL_DOMAINS = ("chart", "language")
BENCHMARKS = ("countbench", "chartqa")
CHECKPOINT = "ck-browser"
LINEAGE = {"training_run": "browser-e2e", "recipe": "baseline", "step": 10,
           "curated_versions": {"chart": "0f3a9c5e"}}
EXPERIMENT = "mm-curation-evals"
UI_TIMEOUT_MS = 90_000          # a page on a 2-core machine busy with the rest of the suite

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status partitionNames assetSelection { path } }
    ... on PythonError { message }
  }
}"""
LOCATION = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"""


@pytest.fixture(scope="session")
def playwright_api():
    """Playwright's sync API, or a skip (a failure under MM_REQUIRE_BROWSER=1) saying what is
    missing; session-scoped and first in the test's arguments, so it is decided before the
    sample data are generated."""
    why = None
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        why = f"no chromium at {CHROMIUM} (Debian: apt-get install -y chromium; or set MM_CHROMIUM)"
    try:
        from playwright import sync_api
    except ImportError:
        why = why or "playwright is not installed (pip install -e '.[dev]')"
    if why:
        if os.environ.get("MM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MM_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(f"browser test: {why}")
    return sync_api


class Shots:
    """Numbered screenshots of the page, written to SCREENSHOTS (the previous run's removed)."""

    def __init__(self, page):
        self.page, self.paths = page, []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob("ui-*.png"):
            old.unlink()

    def take(self, name: str, what: str) -> Path:
        path = SCREENSHOTS / f"ui-{len(self.paths) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        self.paths.append((path, what))
        print(f"screenshot: {path} ({what})", flush=True)
        return path


def _dismiss(page, locator, timeout_ms: int = 3000) -> None:
    """Click a first-visit popup away if it shows up (MLflow's onboarding hints)."""
    try:
        locator.click(timeout=timeout_ms)
    except Exception:       # not shown this time: nothing to dismiss
        pass


def _wait_backfill(dev, backfill_id: str, timeout: float = 900.0) -> dict:
    deadline, status = time.time() + timeout, None
    while time.time() < deadline:
        status = dev.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if status.get("status") not in ("REQUESTED", None):
            return status
        time.sleep(3)
    return status


def _evaluated(instance) -> dict[str, dg.EventLogRecord]:
    """benchmark -> the eval_scores record of CHECKPOINT on it."""
    out = {}
    for r in instance.fetch_materializations(dg.AssetKey("eval_scores"), limit=100).records:
        keys = checkpoint_benchmark_partitions.get_partition_key_from_str(r.partition_key).keys_by_dimension
        if keys["checkpoint"] == CHECKPOINT:
            out[keys["benchmark"]] = r
    return out


@pytest.mark.timeout(1800)    # the suite runs it beside another e2e lane and three batch processes
def test_the_ui_in_a_real_browser(playwright_api, sample_data, tmp_path, monkeypatch):
    sync_api, expect = playwright_api, playwright_api.expect

    home = tmp_path / "home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    (home / "recipes").mkdir()      # no recipes: the daemon curates and trains nothing on its own
    env = {"MM_HOME": str(home), "MM_SAMPLE_DATA": str(sample_data), "DAGSTER_HOME": str(dagster_home),
           "MM_RECIPES": str(home / "recipes"), "MM_EVAL_ON_REGISTER": ",".join(BENCHMARKS),
           "MM_EVAL_MAX_ITEMS": "4", "MM_EVAL_BATCH_SIZE": "4", "HF_HUB_OFFLINE": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    defs = build_definitions()
    asset_graph = defs.resolve_asset_graph()
    groups = sorted({asset_graph.get(k).group_name for k in asset_graph.get_all_asset_keys()})
    instance = dg.DagsterInstance.get()
    graph = LocalGraph(defs, instance)
    graph.run("source_job")
    for bench in BENCHMARKS:
        graph.run("eval_sets_job", bench)
    staging, store = home / "staging", home / "checkpoints"
    write_random_checkpoint(staging / CHECKPOINT, ["How many dots?", "What is shown?", "Three."] * 30, seed=0,
                            **LINEAGE)
    store.mkdir()

    with dagster_dev(REPO_ROOT / "workspace.yaml", dagster_home, cwd=REPO_ROOT, extra_env=env) as dev:
        entries = dev.graphql(LOCATION)["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["loadStatus"]) for e in entries] == [("mm_curation", "LOADED")], entries
        dev.graphql("mutation { setNuxSeen }")      # the "Join the Dagster community" dialog
        os.rename(staging / CHECKPOINT, store / CHECKPOINT)  # the sensor registers and evaluates it meanwhile

        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            shots = Shots(page)
            try:
                backfill_id = _dagster_ui(page, expect, shots, dev, instance, groups)
                _mlflow_ui(page, expect, shots, instance, home)
            except Exception:
                with contextlib.suppress(Exception):     # the failure itself is what gets reported
                    shots.take("failure", "the page when the test failed")
                raise
            finally:
                browser.close()
                print("screenshots:\n" + "\n".join(f"  {p}  {what}" for p, what in shots.paths), flush=True)

    # the backfill that was clicked through made exactly the two domains of both assets
    for key in ("raw_shards", "samples"):
        for domain in DOMAINS:
            records = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(key), asset_partitions=[domain]), limit=1).records
            if domain in BACKFILL_DOMAINS:
                assert records, f"{key}[{domain}] was not materialized"
                assert records[0].asset_materialization.metadata["samples" if key == "raw_shards" else "rows"].value > 0
                assert instance.get_run_by_id(records[0].run_id).tags.get("dagster/backfill") == backfill_id
            else:
                assert not records, f"{key}[{domain}] was materialized, but only {BACKFILL_DOMAINS} were picked"


def _dagster_ui(page, expect, shots, dev, instance, groups: list[str]) -> str:
    from playwright.sync_api import Error as PlaywrightError

    # 1. the global asset lineage: one node per asset group of the Definitions, and no other
    page.goto(f"{dev.url}/asset-groups")
    group_nodes = page.locator("svg foreignObject.group")
    for group in groups:
        expect(group_nodes.filter(has=page.get_by_text(group, exact=True))).to_have_count(1)
    expect(group_nodes).to_have_count(len(groups))
    shots.take("asset-lineage", f"global asset lineage, every stage: {', '.join(groups)}")

    # 2. a per-domain backfill of raw_shards + samples, launched through the Materialize dialog
    page.goto(f"{dev.url}/assets?asset-selection=group:sources")
    for key in ("raw_shards", "samples"):
        box = page.get_by_test_id(f"checkbox-{key}")
        page.locator("label", has=box).click()
        expect(box).to_be_checked()
    page.get_by_role("button", name=re.compile(r"Materialize selected \(2\)")).click()
    # the Materialize dialog (the partition list it opens is a dialog too)
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 2 assets")
    expect(dialog).to_be_visible()
    dialog.get_by_text("Select a partition or create one").click()
    for domain in BACKFILL_DOMAINS:
        page.get_by_role("menuitem").filter(has=page.locator(f'[title="{domain}"]')).click()
    page.keyboard.press("Escape")           # closes the partition list, not the dialog
    expect(page.get_by_placeholder("Filter partitions")).to_be_hidden()      # the list has faded out
    expect(dialog).to_contain_text("2 partitions")
    for domain in BACKFILL_DOMAINS:         # the picked partitions, as tags in the selector
        expect(dialog.locator(f'[title="{domain}"]')).to_be_visible()
    shots.take("materialize-dialog", f"Materialize dialog: raw_shards + samples, partitions {BACKFILL_DOMAINS}")
    dialog.get_by_role("button", name="Launch backfill").click()
    # the click made the instance's one backfill (the test launches none itself); its toast fades
    # after a few seconds, which a page starved of CPU can miss, so the id is also read from the instance
    toast = page.get_by_text(re.compile(r"Created backfill \w+"))
    try:
        expect(toast).to_be_visible(timeout=30_000)
        shots.take("backfill-launched", "the toast: backfill created")
        toast_id = re.search(r"Created backfill (\w+)", toast.inner_text()).group(1)
    except (AssertionError, PlaywrightError):
        toast_id = None
        print("the 'Created backfill' toast was not caught; the backfill id comes from the instance")
    def clicked():
        return [b for b in instance.get_backfills() if sorted(b.asset_selection or [], key=str) ==
                [dg.AssetKey("raw_shards"), dg.AssetKey("samples")]]
    deadline = time.time() + 60
    while not clicked() and time.time() < deadline:
        time.sleep(0.5)
    assert len(clicked()) == 1, instance.get_backfills()
    backfill_id = clicked()[0].backfill_id
    assert toast_id in (None, backfill_id), (toast_id, backfill_id)
    page.goto(f"{dev.url}/runs/b/{backfill_id}")
    expect(page.get_by_text(f"{BACKFILL_DOMAINS[0]}", exact=True).first).to_be_visible()
    shots.take("backfill-requested", f"backfill {backfill_id} just launched: its partitions {BACKFILL_DOMAINS}")

    status = _wait_backfill(dev, backfill_id)
    assert status and status["status"] == "COMPLETED_SUCCESS", (status, dev.log_tail())
    assert sorted(status["partitionNames"]) == sorted(BACKFILL_DOMAINS), status
    page.reload()
    expect(page.locator('span[data-tooltip="Succeeded"]')).to_be_visible()     # the status badge
    for key in ("raw_shards", "samples"):
        expect(page.locator(f'a[href="/assets/{key}"]')).to_be_visible()
    expect(page.get_by_text("100% completed")).to_have_count(2)
    shots.take("backfill-succeeded", f"backfill {backfill_id}: both assets 100% completed, Succeeded")

    # 3. partition status on the asset's page: with only "Materialized" ticked, exactly the two domains
    for key in ("raw_shards", "samples"):
        page.goto(f"{dev.url}/assets/{key}?view=partitions")
        expect(page.get_by_text(f"Materialized ({len(BACKFILL_DOMAINS)})", exact=True)).to_be_visible()
        expect(page.get_by_text(f"Missing ({len(DOMAINS) - len(BACKFILL_DOMAINS)})", exact=True)).to_be_visible()
        for state in ("Failed", "Materializing", "Missing"):
            page.locator("label").filter(has_text=re.compile(rf"^{state} \(\d+\)$")).click()
        expect(page.get_by_text(f"{len(BACKFILL_DOMAINS)} Partitions Selected")).to_be_visible()
        for domain in DOMAINS:
            expect(page.locator(f'[title="{domain}"]')).to_have_count(1 if domain in BACKFILL_DOMAINS else 0)
        page.locator(f'[title="{BACKFILL_DOMAINS[0]}"]').click()     # its details: one materialization
        expect(page.get_by_text("View all historical events (1)")).to_be_visible()
        expect(page.get_by_text("Materialized", exact=True)).to_be_visible()     # the partition's badge
        shots.take(f"partitions-{key}", f"{key}: only the materialized partitions shown, {BACKFILL_DOMAINS}")

    # 4. the checkpoint sensor on the automation page, running
    page.goto(f"{dev.url}/automation")
    sensor_link = page.locator('a[href$="/sensors/checkpoint_sensor"]')
    expect(sensor_link).to_be_visible()
    # its row: a selection checkbox (not ticked) and the on/off switch (on once the status has loaded)
    row = sensor_link.locator("xpath=ancestor::*[count(.//input[@type='checkbox'])=2][1]")
    expect(row.locator("input[type=checkbox]:checked")).to_have_count(1)
    shots.take("automation", "automation page: checkpoint_sensor listed, its toggle on")
    sensor_link.click()
    running = page.locator("tr", has=page.get_by_text("Running", exact=True)).locator("input[type=checkbox]")
    expect(running).to_be_checked()
    expect(page.get_by_text(f'"registered": ["{CHECKPOINT}"]').first).to_be_visible()
    expect(page.get_by_text("Loading ticks")).to_have_count(0)
    shots.take("checkpoint-sensor", f"checkpoint_sensor page: Running, cursor shows {CHECKPOINT} registered")
    return backfill_id


def _model_training_runs(page, expect):
    """Switch the experiment page from its GenAI overview to the runs table; returns the run search
    box. On a busy machine the page can finish loading after the click and come back in GenAI mode
    (CI, 2026-12-06: the overview still showing 90 s later), so the click is repeated until the
    runs table's search box shows."""
    search = page.get_by_placeholder(re.compile(r"metrics\.rmse"))
    for attempt in range(4):
        page.get_by_text("Model training", exact=True).first.click()
        try:
            expect(search).to_be_visible(timeout=30_000)
            return search
        except AssertionError:
            print(f"MLflow still on the GenAI overview after clicking 'Model training' (try {attempt + 1})")
    expect(search).to_be_visible()
    return search


def _mlflow_ui(page, expect, shots, instance, home: Path) -> None:
    # the sensor's evals (requested a few minutes ago, while the browser worked on the Dagster UI)
    deadline = time.time() + 600
    while time.time() < deadline and set(_evaluated(instance)) != set(BENCHMARKS):
        time.sleep(3)
    evaluated = _evaluated(instance)
    assert set(evaluated) == set(BENCHMARKS), sorted(evaluated)
    ck_record = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("checkpoint"), asset_partitions=[CHECKPOINT]), limit=1).records[0]
    ck_version = ck_record.asset_materialization.tags["dagster/data_version"]

    # 5. the MLflow UI over this home's tracking store
    with mlflow_server(f"sqlite:///{home / 'mlflow.db'}", (home / "mlruns").as_uri(),
                       home / "mlflow-server.log") as server:
        # MLflow's first-visit hint ("Detect Issues in Your Traces") opens once its page has loaded —
        # on a busy machine well after the click that opened it — and takes every click under it
        page.add_locator_handler(page.get_by_role("button", name="Got it"), lambda button: button.click())
        page.goto(server.url)
        page.get_by_role("link", name=EXPERIMENT, exact=True).first.click()
        search = _model_training_runs(page, expect)
        _dismiss(page, page.get_by_role("button", name="Close", exact=True))   # the assistant's panel
        search.fill(f'tags.`mm/checkpoint` = "{CHECKPOINT}"')
        search.press("Enter")
        for bench in BENCHMARKS:
            expect(page.get_by_role("link", name=f"{CHECKPOINT}/{bench}", exact=True)).to_be_visible()
        expect(page.get_by_text(f"{len(BENCHMARKS)} matching runs")).to_be_visible()
        shots.take("mlflow-runs", f"MLflow {EXPERIMENT}: the eval runs of {CHECKPOINT}, one per benchmark")

        bench = BENCHMARKS[0]
        record = evaluated[bench]
        run_id = record.asset_materialization.metadata["mlflow_run_id"].value
        page.get_by_role("link", name=f"{CHECKPOINT}/{bench}", exact=True).click()
        expect(page).to_have_url(re.compile(rf"/runs/{run_id}$"))
        tags = {"mm/checkpoint": CHECKPOINT, "mm/benchmark": bench, "mm/checkpoint_version": ck_version,
                "dagster/run_id": record.run_id,
                **{f"mm/lineage/{k}": v if isinstance(v, str) else json.dumps(v) for k, v in LINEAGE.items()}}
        tags_section = page.locator("div", has=page.get_by_text("Tags", exact=True)).filter(
            has=page.get_by_text("mm/checkpoint_version", exact=False)).last
        expect(tags_section).to_be_visible()
        shown = re.sub(r"\s*\n\s*:\s*", ": ", tags_section.inner_text())
        for key, value in tags.items():
            assert f"{key}: {value}" in shown, (key, value, shown)
        shots.take("mlflow-run-tags", f"MLflow run {CHECKPOINT}/{bench}: lineage tags {sorted(tags)}")
