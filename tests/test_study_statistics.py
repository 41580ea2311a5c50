"""Ablation-report estimators on synthetic scores with known truth
(/work/shared/notes/study-statistics.md, section numbers in the comments)."""

import json
import time

import numpy as np
import polars as pl
import pytest

from mm_assets.study.plot import _recipe_order, ablation_png
from mm_assets.study.statistics import (
    AVERAGE,
    GAP_BELOW_BASELINE,
    GAP_ESTABLISHED,
    GAP_NOT_ESTABLISHED,
    ablation_frame,
    ablation_table,
    contamination_split,
    removal_split,
)


def scores_frame(by_bench: dict[str, dict[str, np.ndarray]]) -> pl.DataFrame:
    """Long score frame from {benchmark: {recipe: (seeds x items) scores}}; seed and item ids are indices."""
    parts = []
    for bench, by_recipe in by_bench.items():
        for recipe, matrix in by_recipe.items():
            matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
            seeds, items = np.indices(matrix.shape)
            parts.append(pl.DataFrame({"recipe": [recipe] * matrix.size, "seed": seeds.ravel(),
                                       "benchmark": [bench] * matrix.size, "item_id": items.ravel(),
                                       "score": matrix.ravel()}))
    return pl.concat(parts)


def flipped(scores: np.ndarray, n: int, to: float) -> np.ndarray:
    """Per seed, the first ``n`` items scoring ``1 - to`` set to ``to``: an exact shift of n / items."""
    out = scores.copy()
    for row in out:
        row[np.flatnonzero(row == 1 - to)[:n]] = to
    return out


def row_of(result: dict, recipe: str, benchmark: str) -> dict:
    return next(r for r in result["rows"] + result["average"] if (r["recipe"], r["benchmark"]) == (recipe, benchmark))


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    """Exact-match scores of 3 seeds on 500 items."""
    return (np.random.default_rng(1).random((3, 500)) < 0.5).astype(float)


def test_true_ten_point_gain_is_found(base):  # §2
    result = ablation_table(scores_frame({"docvqa": {"baseline": base, "step": flipped(base, 50, 1.0)}}))
    row = row_of(result, "step", "docvqa")
    assert row["delta"] == pytest.approx(0.10)
    assert 0 < row["delta_lo"] < 0.10 < row["delta_hi"]
    assert (row["n_items"], row["n_seeds"], result["n_boot"]) == (500, 3, 2000)
    json.dumps(result)


def test_no_true_difference_interval_contains_zero(base):
    no_change = flipped(flipped(base, 30, 1.0), 30, 0.0)
    row = row_of(ablation_table(scores_frame({"docvqa": {"baseline": base, "step": no_change}})), "step", "docvqa")
    assert row["delta"] == pytest.approx(0.0)
    assert row["delta_lo"] < 0 < row["delta_hi"]


def test_gap_recovered_half_way_to_oracle(base):  # §4
    oracle = flipped(base, 100, 1.0)
    half_way = flipped(base, 50, 1.0)  # the first 50 of the oracle's 100 gains
    result = ablation_table(scores_frame({"chartqa": {"baseline": base, "step": half_way, "oracle": oracle}}))
    for bench in ("chartqa", AVERAGE):
        row = row_of(result, "step", bench)
        assert row["gap_status"] == GAP_ESTABLISHED
        assert row["gap_recovered"] == pytest.approx(0.5)
        assert 0.3 < row["gap_lo"] < 0.5 < row["gap_hi"] < 0.7
    assert row_of(result, "oracle", "chartqa")["gap_recovered"] == pytest.approx(1.0)
    assert row_of(result, "baseline", "chartqa")["gap_recovered"] == 0.0


def test_gap_interval_of_the_oracle_and_baseline_rows_is_exact_when_some_resamples_have_no_gap():
    """The first study run showed the oracle's own gap recovered as 100 [nan, nan]: resamples
    where the oracle gap is exactly 0 made 0/0 (discrete scores, a small established gap)."""
    from mm_assets.study.statistics import _comparisons

    oracle_gap = np.full(2000, 0.04)
    oracle_gap[:20] = 0.0                                  # 1 % of the resamples: no gap
    step = oracle_gap / 2
    step[20:40] = 0.0
    boot = {"baseline": np.full(2000, 0.5), "oracle": 0.5 + oracle_gap, "step": 0.5 + step}
    point = {"baseline": 0.5, "oracle": 0.54, "step": 0.52}
    rows = _comparisons(point, boot, "baseline", "oracle", 0.95)
    assert rows["oracle"]["gap_status"] == GAP_ESTABLISHED
    assert (rows["oracle"]["gap_lo"], rows["oracle"]["gap_hi"]) == (1.0, 1.0)
    assert (rows["baseline"]["gap_lo"], rows["baseline"]["gap_hi"]) == (0.0, 0.0)
    assert rows["step"]["gap_lo"] == pytest.approx(0.5) and rows["step"]["gap_hi"] == pytest.approx(0.5)


def test_gap_not_established_when_oracle_equals_baseline(base):
    result = ablation_table(scores_frame({"chartqa": {"baseline": base, "step": flipped(base, 50, 1.0),
                                                      "oracle": base}}))
    for row in result["rows"] + result["average"]:
        assert row["gap_status"] == GAP_NOT_ESTABLISHED
        assert row["gap_recovered"] is None and row["gap_lo"] is None and row["gap_hi"] is None


def test_no_gap_recovered_where_the_oracle_scores_below_baseline(base):
    """The refusal study: on PixMo-Points a refusing baseline keeps the metric's credit for not
    pointing and the oracle is 11 points below it; a step that also loses must not read as
    'recovering' a share of that loss."""
    oracle = flipped(base, 100, 0.0)
    also_loses = flipped(base, 50, 0.0)
    result = ablation_table(scores_frame({"pixmo_points": {"baseline": base, "step": also_loses,
                                                           "oracle": oracle}}))
    for row in result["rows"] + result["average"]:
        assert row["gap_status"] == GAP_BELOW_BASELINE
        assert row["gap_recovered"] is None and row["gap_lo"] is None and row["gap_hi"] is None
    assert row_of(result, "step", "pixmo_points")["delta_hi"] < 0     # the loss itself is still reported


def test_pairing_on_items_removes_item_difficulty():  # §2: hopeless unpaired, clear paired
    rng = np.random.default_rng(2)
    difficulty = rng.random(500)
    baseline = difficulty + rng.normal(0, 0.05, 500)
    recipe = difficulty + 0.03 + rng.normal(0, 0.05, 500)
    row = row_of(ablation_table(scores_frame({"ocr": {"baseline": baseline, "step": recipe}})), "step", "ocr")
    draws = np.random.default_rng(0).integers(0, 500, size=(2, 2000, 500))  # each arm its own items
    unpaired = recipe[draws[0]].mean(axis=1) - baseline[draws[1]].mean(axis=1)
    unpaired_lo, unpaired_hi = np.quantile(unpaired, [0.025, 0.975])
    assert row["delta_lo"] > 0 and unpaired_lo < 0
    assert row["delta_hi"] - row["delta_lo"] < 0.25 * (unpaired_hi - unpaired_lo)


def test_pairing_on_seeds_removes_shared_seed_effect():
    rng = np.random.default_rng(3)
    seed_effect = np.array([[-0.05], [0.0], [0.05]])  # the seed fixes data order for every recipe
    baseline = rng.random(500) + seed_effect + rng.normal(0, 0.02, (3, 500))
    scores = scores_frame({"ocr": {"baseline": baseline, "step": baseline + 0.01}})
    widths = {paired: row_of(ablation_table(scores, paired_seeds=paired), "step", "ocr")
              for paired in (False, True)}
    assert (widths[True]["delta_hi"] - widths[True]["delta_lo"]
            < 0.2 * (widths[False]["delta_hi"] - widths[False]["delta_lo"]))
    two_seeds = scores_frame({"ocr": {"baseline": baseline, "step": baseline[:2] + 0.01}})
    assert row_of(ablation_table(two_seeds), "step", "ocr")["n_seeds"] == 2
    with pytest.raises(ValueError, match="same seeds"):
        ablation_table(two_seeds, paired_seeds=True)


@pytest.mark.parametrize("spoil", [
    lambda df: df.filter(~((pl.col("recipe") == "step") & (pl.col("seed") == 2) & (pl.col("item_id") == 7))),
    lambda df: df.with_columns(item_id=pl.when((pl.col("recipe") == "step") & (pl.col("seed") == 2)
                                               & (pl.col("item_id") == 7)).then(999).otherwise("item_id")),
    lambda df: pl.concat([df, df.filter((pl.col("recipe") == "step") & (pl.col("seed") == 2)).head(1)]),
], ids=["missing", "other", "repeated"])
def test_item_set_mismatch_names_the_run(base, spoil):
    scores = scores_frame({"docvqa": {"baseline": base, "step": base}})
    with pytest.raises(ValueError, match="recipe 'step' seed 2 benchmark 'docvqa'"):
        ablation_table(spoil(scores))


def test_average_is_equal_weight_mean_of_benchmark_deltas_with_its_own_interval():  # §3
    rng = np.random.default_rng(4)
    by_bench = {}
    for k, n_items in enumerate((200, 300, 400, 500, 600)):
        base = (rng.random(n_items) < 0.5).astype(float)[None]
        by_bench[f"bench{k}"] = {"baseline": base, "step": flipped(base, 10 * (k + 1), 1.0)}
    result = ablation_table(scores_frame(by_bench))
    per_bench = [row_of(result, "step", bench) for bench in by_bench]
    average = row_of(result, "step", AVERAGE)
    assert average["delta"] == pytest.approx(np.mean([row["delta"] for row in per_bench]), abs=1e-12)
    assert average["delta_lo"] < average["delta"] < average["delta_hi"]
    # resampled together, independent benchmarks average out: narrower than averaging the endpoints
    mean_width = np.mean([row["delta_hi"] - row["delta_lo"] for row in per_bench])
    assert average["delta_hi"] - average["delta_lo"] < 0.7 * mean_width
    assert average["n_items"] == 2000 and len(ablation_frame(result)) == 2 * 6


def test_contamination_split():  # §7
    rows = [("baseline", 0, "chartqa", "a", 1.0, True), ("baseline", 0, "chartqa", "b", 1.0, True),
            ("baseline", 0, "chartqa", "c", 0.0, False), ("baseline", 0, "chartqa", "d", 1.0, False),
            ("baseline", 1, "chartqa", "a", 1.0, True), ("baseline", 1, "chartqa", "b", 0.0, True),
            ("baseline", 1, "chartqa", "c", 0.0, False), ("baseline", 1, "chartqa", "d", 0.0, False),
            ("baseline", 0, "docvqa", "x", 0.2, False), ("baseline", 0, "docvqa", "y", 0.4, False),
            ("v1", 0, "chartqa", "a", 0.0, True), ("v1", 0, "chartqa", "c", 1.0, False)]
    scores = pl.DataFrame(rows, schema=["recipe", "seed", "benchmark", "item_id", "score", "leaked"], orient="row")
    chart, doc = contamination_split(scores)
    # per item over seeds: a=1, b=.5 (leaked); c=0, d=.5 (rest)
    assert (chart["n_leaked"], chart["n_rest"]) == (2, 2)
    assert (chart["mean_leaked"], chart["mean_rest"], chart["difference"]) == pytest.approx((0.75, 0.25, 0.5))
    assert chart["difference_lo"] <= 0.5 <= chart["difference_hi"]
    assert (doc["n_leaked"], doc["mean_leaked"], doc["difference"]) == (0, None, None)
    assert doc["mean_rest"] == pytest.approx(0.3)
    assert contamination_split(scores, recipe="v1")[0]["difference"] == pytest.approx(-1.0)


def test_removal_split():
    truth = pl.DataFrame({"sample_id": ["s1", "s2", "s3", "s4"],
                          "defect_kind": ["duplicate", "duplicate", "irrelevant", "none"]})
    removed = pl.DataFrame({"step": ["semdedup"] * 3 + ["relevance"], "sample_id": ["s1", "s4", "s5", "s3"]})
    got = removal_split(removed, truth).rows()
    assert got == [("semdedup", "duplicate", 1, 2, 0.5), ("semdedup", "irrelevant", 0, 1, 0.0),
                   ("semdedup", "none", 2, None, None),
                   ("relevance", "duplicate", 0, 2, 0.0), ("relevance", "irrelevant", 1, 1, 1.0),
                   ("relevance", "none", 0, None, None)]


def test_ablation_png(base):
    recipes = {"oracle": flipped(base, 100, 1.0), "v1": flipped(base, 60, 1.0), "baseline": base,
               "semdedup": flipped(base, 20, 1.0), "mining": flipped(base, 30, 1.0)}
    result = ablation_table(scores_frame({"docvqa": recipes, "chartqa": recipes}), n_boot=200)
    assert _recipe_order(result) == ["semdedup", "mining", "v1", "oracle"]
    assert ablation_png(result, title="study").startswith(b"\x89PNG\r\n\x1a\n")


def test_speed_and_determinism():
    rng = np.random.default_rng(5)
    scores = scores_frame({f"bench{k}": {f"recipe{r}": (rng.random((3, 500)) < 0.5) for r in range(10)}
                           for k in range(5)})
    start = time.perf_counter()
    result = ablation_table(scores, baseline="recipe0", n_boot=2000)
    assert time.perf_counter() - start < 5
    assert len(result["rows"]) == 50 and len(result["average"]) == 10
    assert ablation_table(scores, baseline="recipe0")["rows"] == result["rows"]
    assert ablation_table(scores, baseline="recipe0", seed=1)["rows"] != result["rows"]


def _subgroup_scores(lifted: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two ChartQA subgroups of 200 items, baseline right on 30 %; mmgen also right on 30 % more of
    the items of the `lifted` subgroups."""
    rng = np.random.default_rng(3)
    rows, placed = [], []
    for sub in ("chartqa/human", "chartqa/augmented"):
        for i in range(200):
            item = f"{sub}-{i}"
            placed.append(("chartqa", item, sub))
            base = rng.random() < 0.3
            for recipe in ("baseline", "mmgen"):
                for seed in (0, 1, 2):
                    lift = recipe == "mmgen" and sub in lifted and rng.random() < 0.3
                    rows.append((recipe, seed, "chartqa", item, float(base or lift)))
    return (pl.DataFrame(rows, schema=["recipe", "seed", "benchmark", "item_id", "score"], orient="row"),
            pl.DataFrame(placed, schema=["benchmark", "item_id", "subgroup"], orient="row"))


def test_targeted_subgroups_are_compared_with_the_untargeted_ones_paired_with_intervals():
    """A recipe that lifts only the subgroup it targeted: that subgroup's delta (and the targeted
    average) excludes 0, the untargeted one's includes it, and so does targeted − untargeted; a
    recipe that lifts both alike has a contrast whose interval includes 0."""
    from mm_assets.study.subgroups import subgroup_comparisons

    scores, subgroups = _subgroup_scores({"chartqa/human"})
    out = subgroup_comparisons(scores, subgroups, {"mmgen": ["chartqa/human"]}, n_boot=500)
    by = {r["subgroup"]: r for r in out["rows"]}
    assert by["chartqa/human"]["targeted"] and by["chartqa/human"]["delta_lo"] > 0
    assert not by["chartqa/augmented"]["targeted"] and by["chartqa/augmented"]["delta"] == 0
    avg = {a["subgroups"]: a for a in out["averages"]}
    assert avg["targeted"]["delta_lo"] > 0 and avg["untargeted"]["delta_lo"] <= 0 <= avg["untargeted"]["delta_hi"]
    assert by["chartqa/human"]["baseline"] == avg["targeted"]["baseline"]
    (contrast,) = out["contrast"]
    assert contrast["difference"] == pytest.approx(avg["targeted"]["delta"] - avg["untargeted"]["delta"])
    assert 0 < contrast["difference_lo"] < contrast["difference"] < contrast["difference_hi"]

    scores, subgroups = _subgroup_scores({"chartqa/human", "chartqa/augmented"})
    alike = subgroup_comparisons(scores, subgroups, {"mmgen": ["chartqa/human"]}, n_boot=500)
    assert all(a["delta_lo"] > 0 for a in alike["averages"])
    (contrast,) = alike["contrast"]
    assert contrast["difference_lo"] <= 0 <= contrast["difference_hi"]


def test_what_mmgen_adds_is_measured_against_the_same_recipe_without_it():
    """v2 is v1 plus mmgen and mmgen is baseline plus mmgen: each is compared with its own recipe
    without the step, paired on the items, with an interval."""
    from mm_assets.recipes.schema import parse_recipe
    from mm_assets.study.subgroups import same_recipe_without, step_effect

    mmgen = "  - mmgen: {targets: {chartqa: {per_subgroup: 5}}}\n"
    v1 = "steps:\n  - length: {min_answer_chars: 1, max_answer_chars: 500}\n"
    recipes = {name: parse_recipe(text, name, f"{name}.yaml") for name, text in {
        "baseline": "steps: []\n", "v1": v1, "v2": v1 + mmgen, "mmgen": "steps:\n" + mmgen,
        "v2w": v1 + mmgen + "domain_weights: {chart: 2.0}\n"}.items()}
    assert same_recipe_without(recipes) == {"mmgen": "baseline", "v2": "v1"}      # v2w has no twin
    rng = np.random.default_rng(0)
    rows = []
    for i in range(300):
        base = rng.random() < 0.4
        for recipe in ("v1", "v2"):
            for seed in (0, 1, 2):
                rows.append((recipe, seed, "chartqa", str(i), float(base or (recipe == "v2" and rng.random() < 0.2))))
    scores = pl.DataFrame(rows, schema=["recipe", "seed", "benchmark", "item_id", "score"], orient="row")
    effect = {r["benchmark"]: r for r in step_effect(scores, "v2", "v1", n_boot=500)}
    assert effect["chartqa"]["compared_with"] == "v1" and effect["chartqa"]["delta_lo"] > 0
    assert step_effect(scores, "v2", "baseline") == []              # no baseline scores: nothing to compare


def test_refusals_are_reported_apart_from_the_other_low_quality_records():
    from mm_assets.study.collect import defect_kinds

    defects = pl.DataFrame({"sample_id": ["a", "b", "c"], "defect": ["low_quality", "low_quality", "near_duplicate"],
                            "detail": ["refusal", "wrong_answer", "group 3 (exact_copy)"]})
    assert defect_kinds(defects).rows() == [("a", "low_quality: refusal"), ("b", "low_quality"),
                                            ("c", "near_duplicate")]
