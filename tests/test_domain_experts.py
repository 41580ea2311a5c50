"""Data mixing through the asset graph on a copy of the filled small graph: the shared start on
every domain of baseline, three domain experts from it at one budget (one pass over the largest
domain), the checkpoint sensor registering them with lineage expert → start → base model and
curated data, the Gray-code sweep of their seven soups, the soups' own evals reusing the sweep's
predictions, the mixing table, and the proxy check: the four mixtures of two or more domains
added by `mm-curation mixtures --spread`, trained for real, ranked against their soups."""

import shutil

import dagster as dg
import polars as pl
import pytest

from conftest import SMALL_BUDGET_TOKENS, built_once, fill_small_graph
from mm_assets.checkpoints import verify_checkpoint
from mm_assets.lineage import lineage
from mm_assets.partitions import checkpoint_partitions
from mm_assets.storage import Storage

pytestmark = pytest.mark.small_graph
EXPERT_DOMAINS = ("caption", "chart", "ocr")
ONE_STEP = 4 * 384          # the budget is met to within one optimizer step (4 rows of 384 tokens)


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
    from mm_assets.mixing.run import run_mixing
    from resources.evaluation import CheckpointStoreResource

    resources = small_graph_resources(home, SMALL_BUDGET_TOKENS)
    # a store of their own: the sensor then registers and evaluates the mixing checkpoints only,
    # not the fill's 18 (the base model and the curated data are artifacts, not in the store)
    resources["checkpoints"] = CheckpointStoreResource(root=str(home / "mixing_checkpoints"),
                                                       evaluate_on=["countbench"])
    g = open_graph(home, small_data, **resources, mixing=MixingResource(start_budget_tokens=3000))

    g.summary = run_mixing(g, EXPERT_DOMAINS, spread=4)     # what `mm-curation mixing` runs
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
        assert abs(expert["tokens_seen"] - start["expert_budget_tokens"]) <= ONE_STEP
        passes[domain] = expert["passes"]
    # the same budget, so a smaller domain is seen more often
    tokens = start["domain_tokens"]
    small, large = min(EXPERT_DOMAINS, key=tokens.get), max(EXPERT_DOMAINS, key=tokens.get)
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
    sweep = g.meta("soup_sweep")
    assert (sweep["soups"], sweep["evaluations_stored"], sweep["experts_read"]) == (7, 7, 7)
    # the sensor registered the soups; their evals reused the sweep's
    names = [n for n in g.instance.get_dynamic_partitions(checkpoint_partitions.name) if n.startswith("soup-")]
    assert len(names) == 7
    for name in names:
        scores = g.meta("eval_scores", dg.MultiPartitionKey({"checkpoint": name, "benchmark": "countbench"}))
        assert scores["generated_items"] == 0 and scores["reused"]
    assert sweep["experts_of_another_start"] == []
    table = g.meta("mixing_table")
    assert table["soups"] == 7 and table["soups_of_other_experts_left_out"] == 0
    assert "caption+chart+ocr" in table["subsets"] and "exhaustive" in table["searches"]
    summary = g.summary
    assert (summary["soups"], summary["evaluations"]) == (7, 7) and summary["domains"] == list(EXPERT_DOMAINS)
    assert set(summary["seconds"]) == {"shared start", "domain experts", "soup sweep", "registration and evals",
                                       "mixing table", "real mixtures", "real mixtures' evals", "proxy check"}


def test_the_proxy_check_ranks_soups_against_models_trained_on_the_same_mixtures(mixed, monkeypatch, capsys):
    from mm_assets.cli import main

    g = mixed
    # the four mixtures of two or more of the three domains: the spread of 4 takes them all
    mixtures = sorted(g.instance.get_dynamic_partitions("mixture"))
    assert mixtures == ["caption+chart", "caption+chart+ocr", "caption+ocr", "chart+ocr"] == sorted(
        g.summary["mixtures"])
    monkeypatch.setenv("DAGSTER_HOME", str(g.home / "dagster_home"))
    assert main(["mixtures", "chart+chart"]) == 2 and "each once" in capsys.readouterr().err
    assert main(["mixtures", "ocr"]) == 2 and "domain_expert[ocr]" in capsys.readouterr().err
    assert main(["mixtures", "--spread", "2"]) == 0          # from the same table: the best and the worst
    assert sorted(g.instance.get_dynamic_partitions("mixture")) == mixtures

    def run_name(mixture: str) -> str:
        return g.meta("mixture_run", mixture)["checkpoint"]
    start = g.meta("mixing_start")
    run = g.meta("mixture_run", "caption+chart+ocr")
    assert abs(run["tokens_seen"] - start["expert_budget_tokens"]) <= ONE_STEP
    tokens = start["domain_tokens"]
    assert run["repeats"] == {d: max(1, round(max(tokens[e] for e in EXPERT_DOMAINS) / tokens[d]))
                              for d in EXPERT_DOMAINS}
    check = g.meta("proxy_check")
    assert check["mixtures"] == 4 and check["not_evaluated_yet"] == 0 and check["mixtures_of_another_start"] == []
    root = Storage(check["uri"])
    pair = root.read_parquet("pairs.parquet").filter(pl.col("mixture") == "chart+ocr").row(0, named=True)
    assert pair["soup"].startswith("soup-chart+ocr-") and pair["real"] == run_name("chart+ocr")
    for model, column in ((pair["soup"], "soup_score"), (pair["real"], "real_score")):
        scores = g.meta("eval_scores", dg.MultiPartitionKey({"checkpoint": model, "benchmark": "countbench"}))
        assert pair[column] == pytest.approx(scores["score"])
    agreement = root.read_parquet("agreement.parquet")
    assert agreement["benchmark"].to_list() == ["countbench", "average"]
    assert agreement["mixtures"].to_list() == [4, 4]
