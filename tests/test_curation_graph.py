"""Recipes through the asset graph on the demo data: SemDeDup targets hit exactly, a recipe
edit recomputes exactly what depends on it, curated versions load and are fully explained."""

import os
import subprocess
import sys
import tarfile

import dagster as dg
import polars as pl
import pytest
import webdataset as wds

from curation_graph import build_graph, cold_fill, copy_graph
from mm_assets.lineage import explain, lineage, recipe_ledger
from mm_assets.taxonomy import DOMAINS
from resources.settings import REPO_ROOT

SEMDEDUP10 = (REPO_ROOT / "recipes" / "semdedup10.yaml").read_text()
pytestmark = pytest.mark.graph_lane     # tests/run_suite.sh: beside the small-graph tests


def delta(before: dict, after: dict) -> dict:
    """New materializations per (asset key, partition)."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def recipe_text(target=None, eps=None):
    threshold = f"target_removal: {target}" if target is not None else f"eps: {eps}"
    return f"steps:\n  - semdedup: {{{threshold}, clusters: auto, keep: hardest}}\n"


@pytest.fixture(scope="module")
def graph(sample_data, tmp_path_factory):
    g = build_graph(tmp_path_factory.mktemp("graph"), sample_data)
    cold_fill(g)
    assert g.automation_tick() == {}          # the first tick only marks the filled graph as handled
    return g


@pytest.fixture
def graph_copy(graph, sample_data, tmp_path):
    with copy_graph(graph, tmp_path / "home", sample_data) as g:
        yield g


def mask_for(g, name, text):
    g.write_recipe(name, text)
    g.register_recipes()
    g.run("semdedup_mask_job", name)
    return g.meta("semdedup_mask", name)


@pytest.mark.parametrize("target", [0.05, 0.10, 0.30])
def test_target_fraction_is_hit_in_both_spaces(graph, target):
    m = mask_for(graph, "sweep", recipe_text(target=target))
    for space in ("image", "text"):
        n, removed = m[f"{space}/n"], m[f"{space}/removed"]
        if m[f"{space}/exact"]:   # the nearest whole count: within 0.1 pp, or half a sample when n is small
            assert removed == m[f"{space}/target_count"] == round(target * n)
            assert abs(m[f"{space}/achieved_removal"] - target) <= max(0.001, 0.5 / n)
        else:                     # tied scores: the nearest reachable count, reported as such
            assert abs(m[f"{space}/achieved_removal"] - target) <= 0.05, m


def test_changing_the_target_only_rethresholds_stored_scores(graph):
    before = graph.counts()
    m = mask_for(graph, "sweep", recipe_text(target=0.07))
    # the work flag is the property; the seconds only bound it (2.09 s once, on 2 cores under the
    # whole suite, whose batch processes run at a lower priority than its end-to-end tests)
    assert m["kmeans_or_pairwise_work"] is False and m["seconds"] < 30.0
    after = graph.counts()
    # only the mask: no score asset recomputed (a wall-clock bound here failed at 31 s under the suite's load)
    assert delta(before, after) == {("semdedup_mask", "sweep"): 1}
    decisions = graph.storage.child(graph.storage.read_json("dagster_io/semdedup_mask/sweep.json")["root"]) \
        .read_parquet("decisions.parquet")
    dropped = decisions.filter(pl.col("decision") == "drop")
    assert dropped.height == m["image/removed"] + m["text/removed"]
    assert dropped["related_id"].null_count() == 0       # every removed sample names its kept representative


def test_eps_recipe_and_the_semantic_pruning_warning(graph):
    m = mask_for(graph, "wide", recipe_text(eps=0.3))
    assert m["image/eps"] == 0.3 and m["image/semantic_pruning_warning"] is True


def test_editing_one_recipe_recomputes_exactly_what_depends_on_it(graph_copy):
    graph = graph_copy
    graph.automation_tick()                   # settle whatever earlier tests changed
    before = graph.counts()
    graph.write_recipe("semdedup10", SEMDEDUP10.replace("target_removal: 0.10", "target_removal: 0.12"))
    graph.register_recipes()
    ticks = [graph.automation_tick() for _ in range(3)]
    assert ticks[0] == {"semdedup_mask": ["semdedup10"]}
    assert ticks[1] == {"curated_dataset": sorted(f"{d}|semdedup10" for d in DOMAINS)}
    assert ticks[2] == {}
    after = graph.counts()
    assert delta(before, after) == {("semdedup_mask", "semdedup10"): 1,
                       **{("curated_dataset", f"{d}|semdedup10"): 1 for d in DOMAINS}}
    meta = graph.meta("semdedup_mask", "semdedup10")
    assert meta["image/target_removal"] == 0.12 and meta["kmeans_or_pairwise_work"] is False
    # the old version stays readable beside the new one
    roots = sorted(p for p in (graph.home / "artifacts" / "curated" / "semdedup10" / "chart").iterdir())
    assert len(roots) >= 2                           # the 10 % and the 12 % versions, both kept
    for r in roots:
        assert (r / "manifest.json").exists() and (r / "ledger.parquet").exists()


def test_an_edit_that_changes_no_output_recomputes_nothing_downstream(graph):
    graph.write_recipe("semdedup10", SEMDEDUP10)
    graph.register_recipes()
    while graph.automation_tick():
        pass
    before = graph.counts()
    # comments and key order: no section hash changes, nothing is requested at all
    graph.write_recipe("semdedup10", "# reordered, commented\nsteps:\n  - semdedup:\n      keep: hardest\n"
                                     "      clusters: auto   # same\n      target_removal: 0.1\n"
                                     "description: SemDeDup to 10 % removal\n")
    graph.register_recipes()
    assert graph.automation_tick() == {}
    assert graph.counts() == before
    # a threshold that removes the very same samples: the mask re-runs, its data version does not
    # change, so no curated dataset re-materializes
    graph.write_recipe("semdedup10", SEMDEDUP10.replace("target_removal: 0.10", "target_removal: 0.1001"))
    graph.register_recipes()
    ticks = [graph.automation_tick() for _ in range(2)]
    assert ticks == [{"semdedup_mask": ["semdedup10"]}, {}]
    after = graph.counts()
    assert delta(before, after) == {("semdedup_mask", "semdedup10"): 1}


def _curated(graph, recipe, domain):
    pk = dg.MultiPartitionKey({"recipe": recipe, "domain": domain})
    m = graph.meta("curated_dataset", pk)
    out = graph.storage.child(graph.storage.read_json(f"dagster_io/curated_dataset/{domain}__{recipe}.json")["root"])
    return m, out, out.read_json("manifest.json")


@pytest.mark.parametrize("recipe", ["baseline", "semdedup10"])
def test_curated_shards_load_with_webdataset_and_tarfile_and_match_the_ledger(graph, recipe):
    m, out, manifest = _curated(graph, recipe, "chart")
    ledger = out.read_parquet("ledger.parquet")
    kept = ledger.filter((pl.col("step") == "curated") & (pl.col("decision") == "in"))["sample_id"].to_list()
    paths = [out.uri(s["tar"]) for s in manifest["shards"]]
    via_wds = [s["__key__"] for s in wds.WebDataset(paths, shardshuffle=False)]
    via_tar = []
    for p in paths:
        with tarfile.open(p) as t:
            via_tar += sorted({n.name.split(".", 1)[0] for n in t.getmembers()},
                              key=[n.name.split(".", 1)[0] for n in t.getmembers()].index)
    assert via_wds == via_tar and sorted(via_wds) == sorted(kept)
    assert m["samples_out"] == len(kept) == manifest["samples_out"]
    assert manifest["samples_in"] == graph.meta("samples", "chart")["rows"]
    steps = ledger["step"].unique().sort().to_list()
    assert steps == sorted(["curated"] + manifest["steps"])
    # one row per sample per step
    assert ledger.group_by("sample_id", "step").len()["len"].max() == 1
    assert ledger.height == manifest["samples_in"] * len(steps)
    if recipe == "semdedup10":
        assert 0 < m["samples_out"] < m["samples_in"]
        assert manifest["per_step"]["semdedup"]["drop"] == m["samples_in"] - m["samples_out"]


def test_why_answers_for_every_sample(graph):
    ids = pl.concat([graph.storage.read_parquet(graph.storage.read_json(f"dagster_io/samples/{d}.json")["root"])
                     for d in DOMAINS])["sample_id"].to_list()
    for recipe in ("baseline", "semdedup10"):
        ledger = recipe_ledger(graph.instance, graph.storage, recipe)
        inside = 0
        for sid in ids:
            text, is_in = explain(ledger, sid, recipe)
            assert sid in text and ("curated" in text)
            inside += is_in
        expected = sum(graph.meta("curated_dataset", dg.MultiPartitionKey({"recipe": recipe, "domain": d}))
                       ["samples_out"] for d in DOMAINS)
        assert inside == expected
        if recipe == "baseline":
            assert inside == len(ids)


def test_lineage_reaches_raw_shard_hashes_and_the_recipe(graph):
    text = lineage(graph.instance, graph.defs, "curated_dataset[semdedup10/chart]")
    raw = graph.storage.child(graph.storage.read_json("dagster_io/raw_shards/chart.json")["root"]).read_json("manifest.json")
    for shard in raw["shards"]:
        assert shard["sha256"][:16] in text
    assert "recipe | " in text and "target_removal" in text
    assert "semdedup_scores[image]" in text and "embedder" in text and "source" in text
    version = graph.meta("curated_dataset", dg.MultiPartitionKey({"recipe": "semdedup10", "domain": "chart"}))["version"]
    assert lineage(graph.instance, graph.defs, version[:12]).splitlines()[0].startswith("curated_dataset[chart|semdedup10]")


def test_why_and_lineage_on_the_command_line(graph):
    env = dict(os.environ, DAGSTER_HOME=str(graph.home / "dagster_home"), MM_HOME=str(graph.home),
               MM_STORAGE_ROOT=str(graph.home / "artifacts"), MM_RECIPES=str(graph.recipes_dir),
               PYTHONWARNINGS="ignore")
    ledger = recipe_ledger(graph.instance, graph.storage, "semdedup10")
    dropped = ledger.filter((pl.col("step") == "curated") & (pl.col("decision") == "out"))["sample_id"][0]
    cli = [sys.executable, "-m", "mm_assets.cli"]
    out = subprocess.run(cli + ["why", dropped, "--recipe", "semdedup10"], env=env, capture_output=True,
                         text=True, cwd=REPO_ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "NOT in the curated dataset" in out.stdout and "semdedup" in out.stdout
    bad = subprocess.run(cli + ["why", "0000000000000000", "--recipe", "semdedup10"], env=env,
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert bad.returncode == 2 and "not in any ledger" in bad.stderr
    out = subprocess.run(cli + ["lineage", "curated_dataset[semdedup10/chart]"], env=env, capture_output=True,
                         text=True, cwd=REPO_ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "raw_shards[chart]" in out.stdout
