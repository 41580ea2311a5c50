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

from conftest import SMALL_BUDGET_TOKENS
from curation_graph import copy_graph, small_graph_resources

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
# `edit_recipes` fixture (no shipped recipe uses the length filter or MM-GEN).
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
    "mmgen": ("mmgen_small", "per_subgroup: 3", "per_subgroup: 2"),
}
# targeted synthesis (MM-GEN) for four benchmarks, each subgroup of its reference split
MMGEN_SMALL = """steps:
  - mmgen:
      targets:
        countbench: {subgroups: auto, per_subgroup: 3}
        chartqa: {subgroups: auto, per_subgroup: 3}
        docvqa: {subgroups: auto, per_subgroup: 3}
        realworldqa: {subgroups: auto, per_subgroup: 3}
      filter: {perplexity: 0.8, dedup: true}
"""


def _edited(small_graph, recipe: str, text: str):
    path = small_graph.recipes_dir / f"{recipe}.yaml"
    before = small_graph.materializations()
    path.write_text(text)
    small_graph.register_recipes()
    small_graph.settle()
    return new_materializations(before, small_graph.materializations())


@pytest.fixture(scope="module")
def edit_recipes(small_graph):
    """The shipped recipes plus one for each step no shipped recipe uses (length, mmgen), each
    curated and trained; MM-GEN's recipe-independent assets (the reference splits, their
    subgroups and candidates) materialized first, as `fill` does for a recipe that uses it."""
    from mm_assets.taxonomy import BENCHMARKS

    small_graph.write_recipe("length_only", LENGTH_ONLY)
    small_graph.write_recipe("mmgen_small", MMGEN_SMALL)
    small_graph.register_recipes()
    for b in BENCHMARKS:
        small_graph.run("reference_sets_job", b)
    small_graph.run("mmgen_reference_job")
    for recipe in ("length_only", "mmgen_small"):
        small_graph.run("step_decisions_job", recipe)
        for d in DOMAINS:
            small_graph.run("curated_dataset_job", f"{d}|{recipe}")
        small_graph.run("training_job", recipe)
    small_graph.settle()
    return small_graph


def _copy(g, small_data, tmp_path):
    """A copy for one test's edits (restoring re-ran the edited step, its 8 curated datasets and
    its training run: half of each edit test's time)."""
    home = tmp_path / "home"
    with copy_graph(g, home, small_data, **small_graph_resources(home, SMALL_BUDGET_TOKENS)) as copy:
        yield copy


@pytest.fixture
def edit_copy(edit_recipes, small_data, tmp_path):
    yield from _copy(edit_recipes, small_data, tmp_path)


@pytest.fixture
def small_graph_copy(small_graph, small_data, tmp_path):
    yield from _copy(small_graph, small_data, tmp_path)


def test_every_registered_step_has_an_edit_below():
    from mm_assets.steps import STEP_BY_KIND
    assert set(STEP_EDITS) == set(STEP_BY_KIND)


@pytest.mark.parametrize("kind", sorted(STEP_EDITS))
def test_a_step_edit_recomputes_that_step_for_that_recipe_and_what_follows_only(edit_copy, kind):
    """Through the automation ticks: the step's decisions for that recipe, its 8 curated
    datasets and its training run — no score asset, nothing of another recipe."""
    from mm_assets.steps import STEP_BY_KIND

    recipe, old, new = STEP_EDITS[kind]
    original = (edit_copy.recipes_dir / f"{recipe}.yaml").read_text()
    assert old in original
    delta = _edited(edit_copy, recipe, original.replace(old, new))
    assert delta == {(STEP_BY_KIND[kind].decisions_asset, recipe): 1,
                     **{("curated_dataset", f"{d}|{recipe}"): 1 for d in DOMAINS},
                     ("training_run", recipe): 1}


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


def test_a_recipe_that_opts_out_of_automatic_training_is_not_retrained(small_graph_copy):
    g = small_graph_copy
    original = (g.recipes_dir / "ppl_top50.yaml").read_text()
    _edited(g, "ppl_top50", original + "training: {auto: false}\n")
    delta = _edited(g, "ppl_top50", original.replace("keep_fraction: 0.5", "keep_fraction: 0.4") +
                    "training: {auto: false}\n")
    assert delta == {("perplexity_decisions", "ppl_top50"): 1,
                     **{("curated_dataset", f"{d}|ppl_top50"): 1 for d in DOMAINS}}


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


def _generated(g, recipe: str) -> pl.DataFrame:
    ptr = g.storage.read_json(f"dagster_io/mmgen_decisions/{recipe}.json")
    return g.storage.read_parquet(f"{ptr['root']}/generated.parquet")


def test_generated_samples_reach_the_curated_shards_in_the_benchmark_format_with_their_lineage(edit_recipes):
    g = edit_recipes
    m = g.meta("mmgen_decisions", "mmgen_small")
    generated = _generated(g, "mmgen_small")
    kept = generated.filter(pl.col("kept"))
    assert m["kept"] == kept.height > 0 and m["requests"] == generated.height
    assert m["valid"] + m["rejected"] == m["requests"]
    # lineage: the reference split versions the subgroups came from, every sample's source and reference item
    refs = {b: g.storage.read_json(f"dagster_io/reference_sets/{b}.json")["version"] for b in m["reference_split"]}
    assert m["reference_split"] == refs and len(refs) == 5
    ledger = recipe_ledger(g.instance, g.storage, "mmgen_small")
    rows = ledger.filter((pl.col("step") == "mmgen") & pl.col("sample_id").is_in(list(generated["gen_id"])))
    assert rows.height == generated.height                           # every generated sample, kept or not
    # the pool's own samples pass the step unchanged: a source's row says what was generated from it
    sources = ledger.filter((pl.col("step") == "mmgen") & pl.col("sample_id").is_in(list(kept["source_sample_id"])))
    assert set(sources["decision"]) == {"keep"} and all("source image of" in r for r in sources["reason"])
    assert dict(rows.select("sample_id", "related_id").iter_rows()) == \
        dict(generated.select("gen_id", "source_sample_id").iter_rows())
    final = dict(ledger.filter(pl.col("step") == FINAL_STEP).select("sample_id", "decision").iter_rows())
    assert {gid for gid in generated["gen_id"] if final[gid] == "in"} == set(kept["gen_id"])
    found = 0
    for domain in DOMAINS:
        members = curated_members(g, "mmgen_small", domain)
        for r in kept.filter(pl.col("domain") == domain).iter_rows(named=True):
            record = json.loads(members[r["gen_id"]]["json"])
            human = record["conversations"][0]["value"]
            assert human.startswith("<image>\n") and human.count("<image>") == 1
            ext = record["image"]["ext"]
            assert members[r["gen_id"]][ext] == members[r["source_sample_id"]][ext]     # the source's image
            assert record["origin"]["mmgen"]["subgroup"] == r["subgroup"]
            found += 1
    assert found == kept.height
    # baseline's curated data is not touched by another recipe's generations
    assert not set(kept["gen_id"]) & set(curated_members(g, "baseline", "chart"))


def test_no_generation_source_is_a_scored_eval_image_or_near_one(edit_recipes):
    """What decontamination removes (image similarity to an eval image at v1's threshold, 0.99)
    is never a source, so generated data adds no contamination for it to miss."""
    g = edit_recipes
    sources = set(_generated(g, "mmgen_small")["source_sample_id"])
    near = g.storage.read_parquet(g.storage.read_json("dagster_io/eval_neighbours.json")["root"]
                                  + "/nearest_eval_item.parquet")
    assert near.filter(pl.col("sample_id").is_in(list(sources)))["similarity"].max() < 0.99
    assert near.filter(pl.col("similarity") >= 0.99).height > 0                     # there are some to avoid
    eval_images = set()
    for b in ("docvqa", "chartqa", "countbench", "realworldqa", "pixmo_points"):
        eval_images |= set(g.storage.read_parquet(g.storage.read_json(f"dagster_io/eval_sets/{b}.json")["root"])
                           ["image_sha256"])
    pool = pl.concat([g.storage.read_parquet(g.storage.read_json(f"dagster_io/samples/{d}.json")["root"])
                      for d in DOMAINS], how="diagonal_relaxed")
    assert not set(pool.filter(pl.col("sample_id").is_in(list(sources)))["image_sha256"]) & eval_images


@pytest.mark.parametrize("scorer", ["checkpoint", "tiny"])
def test_the_weakest_subgroups_are_chosen_on_the_reference_split_by_the_scoring_model(edit_recipes, scorer):
    """`weakest: 1` targets the subgroup where the `score_with` model — baseline's final checkpoint,
    or `tiny`, the reference model already in the graph (what a study names: no run id to know
    in advance) — scores lowest on the reference split (scored once per model version and split
    version, then read back)."""
    g = edit_recipes
    if scorer == "tiny":
        score_with, version = "tiny", g.storage.read_json("dagster_io/reference_model.json")["version"]
    else:
        score_with = g.storage.read_json("dagster_io/training_run/baseline.json")["runs"][0]["final"]
        version = ""
    text = MMGEN_SMALL.replace("countbench: {subgroups: auto, per_subgroup: 3}",
                               "countbench: {subgroups: auto, per_subgroup: 3, weakest: 1}") \
        + f"      score_with: {score_with}\n"
    g.write_recipe(f"mmgen_weakest_{scorer}", text)
    g.register_recipes()
    g.run("mmgen_decisions_job", f"mmgen_weakest_{scorer}")
    m = g.meta("mmgen_decisions", f"mmgen_weakest_{scorer}")
    scores = {r["subgroup"]: r["score"] for r in _markdown_rows(m["reference_scores_by_subgroup"])}
    count = [s for s in m["targeted_subgroups"] if s.startswith("countbench/")]
    assert len(count) == 1 and len(scores) > 1
    assert float(scores[count[0]]) == min(float(v) for v in scores.values())
    assert m["score_with"] == score_with
    assert g.storage.walk_files(f"mmgen_reference_scores/{version}")     # stored for the next recipe that asks


def _markdown_rows(value) -> list[dict]:
    lines = [ln.strip().strip("|").split("|") for ln in value.splitlines() if ln.startswith("|")]
    header = [h.strip() for h in lines[0]]
    return [dict(zip(header, (c.strip() for c in row))) for row in lines[2:]]


def test_scored_eval_items_are_placed_in_the_reference_subgroups(edit_recipes):
    g = edit_recipes
    root = g.storage.read_json("dagster_io/mmgen_reference.json")["root"]
    placed = g.storage.read_parquet(f"{root}/eval_item_subgroups.parquet")
    subgroups = set(g.storage.read_parquet(f"{root}/subgroups.parquet")["subgroup"])
    eval_items = g.storage.read_parquet(g.storage.read_json("dagster_io/eval_sets/countbench.json")["root"])
    assert set(placed.filter(pl.col("benchmark") == "countbench")["item_id"]) == set(eval_items["item_id"])
    assert set(placed["subgroup"].drop_nulls()) <= subgroups
