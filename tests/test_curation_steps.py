"""The curation steps of issue #7 through the asset graph (small generated data, every shipped
recipe): each step's decisions reach the ledger and the curated shards, filtering steps report
canary recall and lift, and a recipe edit recomputes only what reads the edited section."""

import io
import json

import polars as pl
import pytest

from mm_assets.curated.ledger import FINAL_STEP
from mm_assets.lineage import recipe_ledger
from mm_assets.local_runner import new_materializations
from mm_assets.taxonomy import DOMAINS
from mm_assets.webdataset_io import read_shard

STEPS = {"baseline": [], "semdedup10": ["semdedup"], "ppl_top50": ["perplexity"], "rephrase": ["rephrase"],
         "mining": ["mining"], "v1": ["decontamination", "semdedup", "relevance", "perplexity", "rephrase", "mining"],
         "oracle": ["oracle"]}


def curated_members(g, recipe: str, domain: str) -> dict[str, dict[str, bytes]]:
    ptr = g.storage.read_json(f"dagster_io/curated_dataset/{domain}__{recipe}.json")
    out = g.storage.child(ptr["root"])
    members = {}
    for shard in out.read_json("manifest.json")["shards"]:
        for key, fields in read_shard(io.BytesIO(out.read_bytes(shard["tar"]))):
            members[key] = fields
    return members


@pytest.mark.parametrize("recipe", sorted(STEPS))
def test_every_step_of_every_shipped_recipe_is_in_the_ledger(small_graph, recipe):
    ledger = recipe_ledger(small_graph.instance, small_graph.storage, recipe)
    n = ledger.filter(pl.col("step") == FINAL_STEP).height
    assert n == sum(small_graph.meta("samples", d)["rows"] for d in DOMAINS)
    for step in STEPS[recipe]:
        rows = ledger.filter(pl.col("step") == step)
        assert rows.height == n and rows["reason"].null_count() == 0, step


@pytest.mark.parametrize("asset, recipe", [("perplexity_decisions", "ppl_top50"), ("semdedup_mask", "semdedup10"),
                                           ("decontamination_decisions", "v1")])
def test_filtering_steps_report_canary_recall_and_lift(small_graph, asset, recipe):
    m = small_graph.meta(asset, recipe)
    report = m["canary_report"]
    assert report["canaries"] > 0 and report["source"].startswith("planted truth")
    assert m["canary_recall"] == report["found"] / report["canaries"]
    if report["removed"]:
        assert m["canary_lift"] == pytest.approx(report["recall"] / report["removal_fraction"])


def test_perplexity_keeps_its_fraction_and_reports_keep_rates_per_domain(small_graph):
    m = small_graph.meta("perplexity_decisions", "ppl_top50")
    assert set(m["keep_rate_per_domain"]) == set(DOMAINS)
    total = sum(small_graph.meta("samples", d)["rows"] for d in DOMAINS)
    assert m["decisions"]["keep"] == round(0.5 * total)


def test_mined_samples_are_copies_in_the_curated_shards(small_graph):
    ledger = recipe_ledger(small_graph.instance, small_graph.storage, "mining")
    up = ledger.filter((pl.col("step") == "mining") & (pl.col("decision") == "upsample"))
    assert up.height > 0
    sid, domain = up.join(ledger.filter(pl.col("step") == FINAL_STEP).select("sample_id", "domain"),
                          on="sample_id").select("sample_id", "domain").row(0)
    members = curated_members(small_graph, "mining", domain)
    assert f"{sid}_r1" in members and members[f"{sid}_r1"]["json"] == members[sid]["json"]


def test_rephrased_questions_reach_the_curated_shards_with_answers_kept(small_graph):
    m = small_graph.meta("rephrase_decisions", "rephrase")
    assert m["rewritten_samples"] > 0 and "rejected_by_reason" in m
    ledger = recipe_ledger(small_graph.instance, small_graph.storage, "rephrase")
    rewritten = ledger.filter((pl.col("step") == "rephrase") & (pl.col("decision") == "rewrite"))
    sid = rewritten["sample_id"][0]
    domain = ledger.filter((pl.col("sample_id") == sid) & (pl.col("step") == FINAL_STEP))["domain"][0]
    new = json.loads(curated_members(small_graph, "rephrase", domain)[sid]["json"])
    old = json.loads(curated_members(small_graph, "baseline", domain)[sid]["json"])
    assert new["conversations"] != old["conversations"]
    assert [t["value"] for t in new["conversations"] if t["from"] == "gpt"] == \
        [t["value"] for t in old["conversations"] if t["from"] == "gpt"]
    assert new["sample_id"] == old["sample_id"] == sid


def test_decontamination_removes_the_planted_leaks(small_graph):
    report = small_graph.meta("decontamination_decisions", "v1")["vs_planted_leaks"]
    assert report["planted"] > 0 and report["recall"] == 1.0


def test_the_oracle_drops_the_planted_defects_and_says_it_reads_the_truth(small_graph):
    m = small_graph.meta("oracle_decisions", "oracle")
    assert m["reads_planted_truth"] is True and m["oracle"].startswith("oracle (reads planted truth)")
    assert m["decisions"]["drop"] == sum(m["planted_in_pool"].values()) > 0
    assert "canary_report" not in m                  # its canary recall would be 1 by construction


# One edit per registered step kind, in that step's section only (in a recipe that uses the
# step), that changes the step's decisions on the small data. `length_only` is written by the
# `length_recipe` fixture (no shipped recipe uses the length filter).
LENGTH_ONLY = "steps:\n  - length: {min_answer_chars: 1, max_answer_chars: 5000}\n"
STEP_EDITS = {
    "length": ("length_only", "max_answer_chars: 5000", "max_answer_chars: 20"),
    "semdedup": ("semdedup10", "target_removal: 0.10", "target_removal: 0.30"),
    "perplexity": ("ppl_top50", "keep_fraction: 0.5", "keep_fraction: 0.4"),
    "relevance": ("v1", "relevance: {remove: true, max_flag_rate: 0.05}",
                  "relevance: {remove: true, max_flag_rate: 0.3, z_threshold: -0.5}"),
    "rephrase": ("rephrase", "fraction: 0.3", "fraction: 0.6"),
    "mining": ("mining", "upsample: {countbench: 2, docvqa: 2,", "upsample: {countbench: 3, docvqa: 2,"),
    "decontamination": ("v1", "threshold: 0.99", "threshold: 0.9"),
    "oracle": ("oracle", "oracle: {}", "oracle: {defects: [low_quality, leaked_eval_item]}"),
}


def _edited(small_graph, recipe: str, text: str):
    path = small_graph.recipes_dir / f"{recipe}.yaml"
    before = small_graph.materializations()
    path.write_text(text)
    small_graph.register_recipes()
    small_graph.settle()
    return new_materializations(before, small_graph.materializations())


@pytest.fixture(scope="module")
def length_recipe(small_graph):
    small_graph.write_recipe("length_only", LENGTH_ONLY)
    small_graph.register_recipes()
    small_graph.run("step_decisions_job", "length_only")
    for d in DOMAINS:
        small_graph.run("curated_dataset_job", f"{d}|length_only")
    small_graph.run("training_job", "length_only")
    small_graph.settle()
    return small_graph


def test_every_registered_step_has_an_edit_below():
    from mm_assets.steps import STEP_BY_KIND
    assert set(STEP_EDITS) == set(STEP_BY_KIND)


@pytest.mark.parametrize("kind", sorted(STEP_EDITS))
def test_a_step_edit_recomputes_that_step_for_that_recipe_and_what_follows_only(length_recipe, kind):
    """Through the automation ticks: the step's decisions for that recipe, its 8 curated
    datasets and its training run — no score asset, nothing of another recipe."""
    from mm_assets.steps import STEP_BY_KIND

    small_graph = length_recipe
    recipe, old, new = STEP_EDITS[kind]
    path = small_graph.recipes_dir / f"{recipe}.yaml"
    original = path.read_text()
    assert old in original
    try:
        delta = _edited(small_graph, recipe, original.replace(old, new))
        assert delta == {(STEP_BY_KIND[kind].decisions_asset, recipe): 1,
                         **{("curated_dataset", f"{d}|{recipe}"): 1 for d in DOMAINS},
                         ("training_run", recipe): 1}
    finally:
        _edited(small_graph, recipe, original)


def test_a_comment_edit_recomputes_nothing(small_graph):
    """v1 uses every shipped step: comments, blank lines and key order change no section."""
    path = small_graph.recipes_dir / "v1.yaml"
    original = path.read_text()
    reordered = original.replace("decontamination: {enabled: true, threshold: 0.99}",
                                 "decontamination: {threshold: 0.99,   enabled: true}  # same")
    assert reordered != original
    try:
        assert _edited(small_graph, "v1", "# edited by hand\n\n" + reordered + "\n# the end\n") == {}
    finally:
        _edited(small_graph, "v1", original)


def test_a_recipe_that_opts_out_of_automatic_training_is_not_retrained(small_graph):
    path = small_graph.recipes_dir / "ppl_top50.yaml"
    original = path.read_text()
    try:
        _edited(small_graph, "ppl_top50", original + "training: {auto: false}\n")
        delta = _edited(small_graph, "ppl_top50", original.replace("keep_fraction: 0.5", "keep_fraction: 0.4") +
                        "training: {auto: false}\n")
        assert delta == {("perplexity_decisions", "ppl_top50"): 1,
                         **{("curated_dataset", f"{d}|ppl_top50"): 1 for d in DOMAINS}}
    finally:
        _edited(small_graph, "ppl_top50", original)


def test_any_checkpoint_in_the_store_can_be_the_perplexity_scorer(small_graph):
    """A domain-expert checkpoint (here written by an 'outside trainer') named by a recipe scores
    the pool next to the default reference model, which is reused, not recomputed."""
    from mm_assets.vlm.random_checkpoint import write_random_checkpoint

    store = small_graph.defs.resources["checkpoints"].get()
    st = small_graph.storage
    chart = st.read_parquet(st.read_json("dagster_io/samples/chart.json")["root"])
    write_random_checkpoint(store.uri("chart-expert"), chart["question"].to_list() + chart["answer"].to_list(),
                            seed=1, training_run="outside")
    small_graph.write_recipe("ppl_expert", "steps:\n  - perplexity: {slice: mid, scorer: chart-expert}\n")
    try:
        small_graph.register_recipes()
        for d in DOMAINS:
            small_graph.run("perplexity_scores_job", d)
        rows = {r["scorer"]: r for r in small_graph.meta("perplexity_scores", "chart")["scorers"]}
        assert rows["tiny"]["reused"] and not rows["chart-expert"]["reused"]
        small_graph.run("step_decisions_job", "ppl_expert")
        m = small_graph.meta("perplexity_decisions", "ppl_expert")
        total = sum(small_graph.meta("samples", d)["rows"] for d in DOMAINS)
        assert m["scorer"] == "chart-expert"
        assert abs(m["decisions"]["keep"] - total / 3) <= 1            # the middle third
    finally:
        (small_graph.recipes_dir / "ppl_expert.yaml").unlink()
        small_graph.register_recipes()
