"""Data mixing through the asset graph on a copy of the filled small graph: the shared start on
every domain of baseline, two domain experts from it at one budget (one pass over the largest
domain), the checkpoint sensor registering them with lineage expert → start → base model and
curated data, the Gray-code sweep of their three soups, the soups' own evals reusing the sweep's
predictions, and the mixing table."""

import shutil

import dagster as dg
import pytest

from conftest import SMALL_BUDGET_TOKENS, built_once, fill_small_graph
from mm_assets.checkpoints import verify_checkpoint
from mm_assets.lineage import lineage
from mm_assets.partitions import checkpoint_partitions

pytestmark = pytest.mark.small_graph
EXPERT_DOMAINS = ("chart", "ocr")


@pytest.fixture(scope="module")
def mixed(small_data, tmp_path_factory):
    from curation_graph import open_graph, small_graph_resources
    from resources.mixing import MixingResource

    home = tmp_path_factory.mktemp("mixing") / "home"
    shared = built_once("small_graph", lambda h: fill_small_graph(h, small_data))
    if shared is None:
        fill_small_graph(home, small_data)
    else:
        shutil.copytree(shared, home)
    g = open_graph(home, small_data, **small_graph_resources(home, SMALL_BUDGET_TOKENS),
                   mixing=MixingResource(start_budget_tokens=3000))
    while g.sensor_tick("checkpoint_sensor"):          # the fill's own checkpoints, before ours
        pass
    g.run("mixing_start_job")
    for domain in EXPERT_DOMAINS:
        g.run("domain_expert_job", domain)
    return g


def test_experts_train_from_the_shared_start_at_one_budget(mixed):
    g = mixed
    start = g.meta("mixing_start")
    store = g.defs.resources["checkpoints"].get()
    start_manifest = verify_checkpoint(store, start["checkpoint"])
    baseline = {d: g.meta("curated_dataset", f"{d}|baseline")["version"] for d in start["domain_tokens"]}
    assert start_manifest["curated_versions"] == baseline and len(baseline) > len(EXPERT_DOMAINS)
    assert start_manifest["base_model_version"] == g.meta("base_model")["version"]
    assert start["tokens_seen"] >= 3000
    # the experts' budget: one pass over the largest domain
    assert start["expert_budget_tokens"] == max(start["domain_tokens"].values())
    passes = {}
    for domain in EXPERT_DOMAINS:
        expert = g.meta("domain_expert", domain)
        manifest = verify_checkpoint(store, expert["checkpoint"])
        assert manifest["start_checkpoint"] == {"name": start["checkpoint"], "version": start["version"]}
        assert manifest["curated_versions"] == {domain: baseline[domain]} and manifest["recipe"] == "baseline"
        assert expert["budget_tokens"] == start["expert_budget_tokens"]
        assert start["expert_budget_tokens"] <= expert["tokens_seen"] <= start["expert_budget_tokens"] + 4 * 384
        passes[domain] = expert["passes"]
    # the same budget, so the smaller domain is seen more often
    small, large = sorted(EXPERT_DOMAINS, key=lambda d: start["domain_tokens"][d])
    assert passes[small] > passes[large] >= 0.99


def test_the_sensor_registers_experts_with_lineage_to_the_start_and_the_curated_data(mixed):
    g = mixed
    while g.sensor_tick("checkpoint_sensor"):          # registration, then the evals
        pass
    start, expert = g.meta("mixing_start")["checkpoint"], g.meta("domain_expert", "chart")["checkpoint"]
    tree = lineage(g.instance, g.defs, f"eval_scores[{expert}/countbench]")
    assert f"checkpoint[{expert}]" in tree and f"checkpoint[{start}]" in tree, tree
    assert "curated_dataset[chart|baseline]" in tree and "base_model" in tree, tree
    assert "curated_dataset[ocr|baseline]" in tree, tree       # through the start, trained on every domain
    assert "never materialized" not in tree, tree


def test_the_sweep_evaluates_every_soup_and_the_mixing_table_collects_them(mixed):
    g = mixed
    g.run("soup_sweep_job")
    sweep = g.meta("soup_sweep")
    assert (sweep["soups"], sweep["evaluations_stored"], sweep["experts_read"]) == (3, 3, 3)
    while g.sensor_tick("checkpoint_sensor"):          # registers the soups; their evals reuse the sweep's
        pass
    names = [n for n in g.instance.get_dynamic_partitions(checkpoint_partitions.name) if n.startswith("soup-")]
    assert len(names) == 3
    for name in names:
        scores = g.meta("eval_scores", dg.MultiPartitionKey({"checkpoint": name, "benchmark": "countbench"}))
        assert scores["generated_items"] == 0 and scores["reused"]
    g.run("mixing_table_job")
    table = g.meta("mixing_table")
    assert table["soups"] == 3
    assert "chart+ocr" in table["subsets"] and "exhaustive" in table["searches"]
