"""The `oracle` step (the upper bound): it drops exactly the planted defects, keeps one copy of
each near-duplicate group, refuses to run without planted truth, is labelled wherever a recipe
is shown — and it is the only code whose decisions read the planted truth.

The pool is the small generated data set ingested with the plain functions (no Dagster, a few
seconds); `decide` is called with a `StepInputs` built by hand."""

import ast
import json
from pathlib import Path

import polars as pl
import pytest

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS
from mm_assets.curation_step import StepInputs
from mm_assets.oracle import DEFECT_KINDS, planted_defect_ids, planted_defects
from mm_assets.recipes.schema import load_recipe, parse_recipe
from mm_assets.steps import STEP_BY_KIND, STEPS, reads_planted_truth, recipe_label
from mm_assets.storage import Storage
from mm_assets.taxonomy import DOMAINS

REPO = Path(__file__).resolve().parent.parent
ORACLE = STEP_BY_KIND["oracle"]


@pytest.fixture(scope="module")
def pool_and_truth(small_data, tmp_path_factory):
    """Every domain's samples table of the main and dirty sources (the pool every step decides
    on), the truth file and the storage."""
    from mm_assets.sources.ingest import ingest_domain
    from mm_assets.sources.samples_table import build_samples_table
    from mm_assets.sources.source_scan import SourceSpec, scan_sources

    out = Storage(str(tmp_path_factory.mktemp("oracle_pool")))
    specs = [SourceSpec(n, str(small_data / n / "mammoth_si.json"), str(small_data / n / "images"))
             for n in ("main", "dirty")]
    manifest = scan_sources(specs, str(small_data / "source_to_domain.json"), out.child("source"))
    tables = [build_samples_table(out.child(f"raw/{d}"), ingest_domain(out.child("source"), manifest, d,
                                                                        out.child(f"raw/{d}")))
              for d in DOMAINS]
    path = small_data / "truth" / "planted_truth.json"
    return pl.concat(tables, how="diagonal_relaxed"), str(path), out


def inputs(pool: pl.DataFrame, truth_path: str | None, st: Storage, **params) -> StepInputs:
    x = StepInputs(recipe="oracle", params=ORACLE.params(**params), storage=st,
                   pointers=lambda asset: pytest.fail(f"the oracle reads no stored asset but the pool ({asset})"),
                   planted_truth=truth_path)
    x.__dict__["pool"] = pool          # the cached pool, as the decisions asset would read it
    return x


def expected(truth: dict, pool: pl.DataFrame) -> tuple[dict[str, set[str]], list[list[str]]]:
    """Straight from the truth: the sample ids of each defect kind, and each group's ingested
    members in truth order (original first)."""
    sid = {o: s for s, src, o in pool.select("sample_id", "source_name", "ordinal").iter_rows() if src == "main"}
    ids = lambda refs: {sid[r["ordinal"]] for r in refs if r["ordinal"] in sid}   # noqa: E731
    groups = [[sid[r["ordinal"]] for r in (g["original"], *g["duplicates"]) if r["ordinal"] in sid]
              for g in truth["near_duplicate_groups"]]
    return {"low_quality": ids(x["ref"] for x in truth["low_quality"]),
            "leaked_eval_item": ids(x["ref"] for x in truth["leaked_eval_items"]),
            "near_duplicate": {m for g in groups for m in g[1:]}}, [g for g in groups if g]


def test_the_oracle_drops_exactly_the_planted_defects(pool_and_truth):
    pool, path, st = pool_and_truth
    truth = json.loads(Path(path).read_text())
    want, groups = expected(truth, pool)
    assert all(want.values()) and any(len(g) > 1 for g in groups)      # every defect kind is planted

    decided = ORACLE.decide(inputs(pool, path, st))
    d = decided.decisions
    assert set(STEP_DECISION_COLUMNS) - {"params_hash"} <= set(d.columns)
    assert sorted(d["sample_id"].to_list()) == sorted(pool["sample_id"].to_list())
    assert set(d["decision"].unique().to_list()) == {"keep", "drop"} and d["reason"].null_count() == 0
    dropped = set(d.filter(pl.col("decision") == "drop")["sample_id"].to_list())
    assert dropped == want["low_quality"] | want["near_duplicate"] | want["leaked_eval_item"]

    kept = set(d.filter(pl.col("decision") == "keep")["sample_id"].to_list())
    for members in groups:
        assert [m for m in members if m in kept] == members[:1]          # the original (first ingested) stays
    related = dict(d.filter(pl.col("related_id").is_not_null()).select("sample_id", "related_id").iter_rows())
    assert related == {m: g[0] for g in groups for m in g[1:]}           # each dropped copy names the kept one

    assert planted_defect_ids(truth, pool) == {s: k for k, ids in want.items() for s in ids}
    assert decided.metadata["planted_in_pool"] == {k: len(want[k]) for k in DEFECT_KINDS}
    assert "reads planted truth" in decided.metadata["oracle"] and not decided.canaries


def test_defects_narrow_the_oracle_to_some_kinds(pool_and_truth):
    pool, path, st = pool_and_truth
    want, _ = expected(json.loads(Path(path).read_text()), pool)
    d = ORACLE.decide(inputs(pool, path, st, defects=["low_quality", "leaked_eval_item"])).decisions
    assert set(d.filter(pl.col("decision") == "drop")["sample_id"].to_list()) == \
        want["low_quality"] | want["leaked_eval_item"]
    spared = d.filter(pl.col("sample_id").is_in(list(want["near_duplicate"])))
    assert (spared["decision"] == "keep").all()
    assert spared["reason"].str.contains("this oracle drops only low_quality, leaked_eval_item").all()


def test_a_group_whose_original_was_not_ingested_keeps_its_first_ingested_duplicate():
    ref = lambda o: {"file": "main/mammoth_si.json", "ordinal": o}            # noqa: E731
    truth = {"low_quality": [{"ref": ref(7), "kind": "wrong_answer"}],
             "leaked_eval_items": [{"ref": ref(8), "benchmark": "chartqa", "item_id": "chartqa-00001"}],
             "near_duplicate_groups": [
                 {"group_id": "g1", "kind": "exact_copy", "original": ref(0), "duplicates": [ref(1), ref(2), ref(3)]},
                 {"group_id": "g2", "kind": "text_copy", "original": ref(4), "duplicates": [ref(5)]},
                 {"group_id": "g3", "kind": "text_copy", "original": ref(7), "duplicates": [ref(6)]}]}
    # ordinal 0 (g1's original) and 5 (g2's only duplicate) were quarantined; a dirty-source
    # record with ordinal 1 is another record
    samples = pl.DataFrame({"sample_id": ["d1", "s1", "s2", "s3", "s4", "s6", "s7", "s8"],
                            "source_name": ["dirty"] + ["main"] * 7, "ordinal": [1, 1, 2, 3, 4, 6, 7, 8]})
    got = planted_defects(truth, samples)
    assert dict(got.select("sample_id", "defect").iter_rows()) == {
        "s2": "near_duplicate", "s3": "near_duplicate", "s7": "low_quality", "s8": "leaked_eval_item"}
    assert dict(got.select("sample_id", "related_id").iter_rows())["s2"] == "s1"
    # g3's original is low quality: its duplicate is the one copy kept, s7 counts once
    assert "s6" not in got["sample_id"].to_list() and got.height == 4


def test_the_oracle_refuses_to_run_without_planted_truth(pool_and_truth, tmp_path):
    pool, _, st = pool_and_truth
    for path in (None, str(tmp_path / "no_truth.json")):
        with pytest.raises(ValueError, match="oracle needs the generated data's planted truth; "
                                             "it cannot run on real data"):
            ORACLE.decide(inputs(pool, path, st))


def test_steps_that_read_only_the_samples_decide_blind_to_the_planted_truth(pool_and_truth, tmp_path):
    """Behavioural check of what the static check below cannot see, for the steps cheap enough
    to run here: with or without the truth, the same decisions."""
    pool, path, st = pool_and_truth
    blind = [s for s in STEPS if set(s.reads) <= {"samples"} and not s.reads_planted_truth]
    assert blind
    for step in blind:
        runs = []
        for truth in (path, None):
            x = StepInputs(recipe="r", params=step.params(), storage=st, pointers=lambda a: pytest.fail(a),
                           planted_truth=truth)
            x.__dict__["pool"] = pool
            runs.append(step.decide(x).decisions.sort("sample_id"))
        assert runs[0].equals(runs[1]), step.kind


# --------------------------------------------------------------------------------------------
# Who reads the planted truth
# --------------------------------------------------------------------------------------------

# Every module that reads the planted truth, and what for. Only the oracle decides on it; a
# module that starts reading it must be added here, on purpose, with its purpose.
TRUTH_READERS = {
    "mm_assets/oracle/step.py": "DECISIONS: the oracle, the upper bound (reads_planted_truth=True)",
    "mm_assets/curation_step.py": "StepInputs carries the truth file to the steps",
    "mm_assets/curated/step_assets.py": "hands the data source's truth file to StepInputs and the canaries",
    "mm_assets/dedup/step.py": "report: the keep mask's precision/recall on the planted near-duplicate groups",
    "mm_assets/relevance/step.py": "report: the flags' catch rate on the planted unrelated questions",
    "mm_assets/decontamination/step.py": "report: the removals' recall of the planted leaks",
    "resources/canaries.py": "report: the planted low-quality records as canaries (recall, lift)",
    "resources/settings.py": "the generated data source names its truth file",
    "mm_assets/sample_data/generate.py": "writes the truth",
    "mm_assets/demo.py": "reuses generated data of the same scale and seed",
    "mm_assets/study/assets.py": "report: baseline on leaked eval items vs the rest; removals by planted defect kind",
}


def truth_reads(path: Path) -> set[str]:
    """What in a module reads the planted truth: `.truth` / `.planted_truth`, `load_truth`, or
    the truth file's name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("truth", "planted_truth") and \
                isinstance(node.ctx, ast.Load):
            found.add(f".{node.attr}")
        elif (isinstance(node, ast.Name) and node.id == "load_truth") or \
                (isinstance(node, ast.alias) and node.name == "load_truth"):
            found.add("load_truth")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "planted_truth.json" in node.value:
            found.add("planted_truth.json")
    return found


def test_only_the_listed_modules_read_the_planted_truth():
    readers = {str(p.relative_to(REPO)): truth_reads(p)
               for top in ("mm_assets", "resources", "jobs") for p in sorted((REPO / top).rglob("*.py"))}
    readers = {p: r for p, r in readers.items() if r}
    assert set(readers) == set(TRUTH_READERS), \
        "a module reads the planted truth without being listed in TRUTH_READERS (only the oracle may decide on it)"


def test_the_oracle_is_the_only_step_that_decides_on_the_planted_truth():
    assert [s.kind for s in STEPS if s.reads_planted_truth] == ["oracle"]
    step_modules = {p: why for p, why in TRUTH_READERS.items() if p.endswith("/step.py")}
    assert [p for p, why in step_modules.items() if why.startswith("DECISIONS")] == ["mm_assets/oracle/step.py"]
    assert all(why.startswith(("report:", "DECISIONS")) for why in step_modules.values())


# --------------------------------------------------------------------------------------------
# Labelled as such
# --------------------------------------------------------------------------------------------

def test_an_oracle_recipe_is_labelled_wherever_it_is_shown():
    from mm_assets.evaluation.compare import format_comparison

    oracle = load_recipe(REPO / "recipes" / "oracle.yaml")
    assert oracle.steps == (("oracle", ORACLE.params()),)
    assert oracle.description.startswith("oracle (reads planted truth)") and "upper bound" in oracle.description
    assert ORACLE.description.startswith("oracle (reads planted truth)")
    assert reads_planted_truth(oracle) and recipe_label(oracle) == "oracle (reads planted truth)"
    mixed = parse_recipe("steps:\n  - length: {}\n  - oracle: {defects: [near_duplicate]}\n", "mixed")
    assert recipe_label(mixed) == "mixed (reads planted truth)"
    v1 = load_recipe(REPO / "recipes" / "v1.yaml")
    assert not reads_planted_truth(v1) and recipe_label(v1) == "v1"

    table = pl.DataFrame({"recipe": ["oracle", "v1"], "benchmark": ["chartqa"] * 2, "delta": [0.1, 0.0],
                          "ci95_low": [0.05, -0.1], "ci95_high": [0.15, 0.1], "excludes_zero": [True, False],
                          "equal_compute": [True, True]})
    shown = format_comparison(table, {"oracle": recipe_label(oracle), "v1": recipe_label(v1)})
    assert shown["recipe"].to_list() == ["oracle (reads planted truth)", "v1"]


def test_oracle_parameters_are_strict():
    from mm_assets.recipes.schema import RecipeError

    for bad in ("{defects: []}", "{defects: [low_quality, low_quality]}", "{defects: [typos]}", "{drop: all}"):
        with pytest.raises(RecipeError, match=r"steps\[0\]\.oracle"):
            parse_recipe(f"steps:\n  - oracle: {bad}\n", "bad")
