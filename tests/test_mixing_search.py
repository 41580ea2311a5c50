"""Searching mixtures, the mixing table's analyses and the proxy's rank agreement, on tables
whose answers are known (the soups' own evaluation is tested in test_soups.py)."""

import io
from itertools import combinations

import numpy as np
import polars as pl
import pytest

from mm_assets.mixing.proxy import average_ranks, of_start, rank_agreement, spearman
from mm_assets.mixing.search import beam_search, dirichlet_search, evaluations_to_reach, exhaustive, greedy_soup
from mm_assets.mixing.table import AVERAGE, best_mixtures, marginal_contributions, of_experts, plot_mixing, \
    search_report, soup_rows, subset_table

EXPERTS = [f"e{i}" for i in range(8)]
# each expert's own worth; soups average their experts, so diluting a good expert with a bad one
# costs — plus a synergy between e2 and e5 that a greedy search in score order cannot see
WORTH = dict(zip(EXPERTS, [0.50, 0.42, 0.30, 0.36, 0.10, 0.41, 0.05, 0.40]))


def diluted(subset: frozenset) -> float:
    score = 0.6 * max(WORTH[e] for e in subset) + 0.4 * sum(WORTH[e] for e in subset) / len(subset)
    return score + (0.3 if {"e2", "e5"} <= subset else 0.0)


def test_exhaustive_evaluates_every_subset_once_and_finds_the_maximum():
    result = exhaustive(EXPERTS, diluted)
    every = [frozenset(c) for k in range(1, 9) for c in combinations(EXPERTS, k)]
    assert result.evaluations == 255 == len(every)
    assert result.score == max(diluted(s) for s in every)
    assert result.best == max(every, key=diluted)


def test_greedy_soup_adds_in_order_of_own_score_while_the_soup_does_not_get_worse():
    calls = []
    result = greedy_soup(EXPERTS, lambda s: calls.append(s) or diluted(s))
    assert len(calls) == len(set(calls)) == result.evaluations <= 2 * len(EXPERTS) - 1     # cached: never twice
    assert calls[:8] == [frozenset([e]) for e in EXPERTS]
    # e0 (0.50) first; adding e1 (0.42) dilutes it: 0.6·0.5 + 0.4·0.46 = 0.484 < 0.50, refused; so is
    # every other: the greedy soup stays e0 alone and misses the e2+e5 synergy
    assert result.best == frozenset(["e0"]) and result.score == pytest.approx(0.50)
    assert [c[1] for c in result.curve] == sorted(c[1] for c in result.curve)         # best so far never falls


def test_beam_search_finds_what_greedy_misses_with_a_quarter_of_the_evaluations():
    best = exhaustive(EXPERTS, diluted)
    forward = beam_search(EXPERTS, diluted, width=1)
    wide = beam_search(EXPERTS, diluted, width=3)
    assert forward.evaluations < wide.evaluations <= 0.25 * 255
    assert beam_search(EXPERTS, diluted, width=2).score < best.score
    # width 3 keeps e5 (third alone) in the beam, so its pair with e2 is tried; width 2 drops it
    assert wide.score == pytest.approx(best.score) and wide.best == best.best
    assert evaluations_to_reach(wide, best.score - 0.01) <= wide.evaluations
    assert evaluations_to_reach(forward, 10.0) is None


def test_a_budget_stops_a_search_with_the_best_it_found():
    result = beam_search(EXPERTS, diluted, width=3, budget=10)
    assert result.evaluations == 10
    assert result.score == max(c[1] for c in result.curve)
    with pytest.raises(ValueError, match="beam width"):
        beam_search(EXPERTS, diluted, width=0)


def test_dirichlet_search_starts_uniform_spends_its_budget_and_repeats_with_its_seed():
    target = np.array([0.7, 0.2, 0.1])

    def closeness(weights: tuple) -> float:
        return -float(np.abs(np.array(weights) - target).sum())

    one = dirichlet_search(3, closeness, budget=60, seed=1)
    assert one.curve[0][2] == (0.3333, 0.3333, 0.3333)
    assert one.evaluations == 60
    assert all(abs(sum(w) - 1) < 1e-3 for _, _, w in one.curve)
    assert one.score > closeness((0.3333, 0.3333, 0.3333)) and one.score > -0.25
    assert dirichlet_search(3, closeness, budget=60, seed=1) == one
    assert dirichlet_search(3, closeness, budget=60, seed=2).curve != one.curve


def _summaries(scores: dict[frozenset, dict[str, float]], weights: dict | None = None) -> list[dict]:
    out = []
    for subset, by_bench in scores.items():
        names = sorted(subset)
        label = "+".join(n.replace("-expert", "") for n in names)
        spec = {"experts": [{"name": n, "version": "v" + n} for n in names], "weights": (weights or {}).get(subset)}
        for bench, score in by_bench.items():
            out.append({"checkpoint": f"soup-{label}-{'0' * 12}", "benchmark": bench, "score": score,
                        "ci95_low": score - 0.05, "ci95_high": score + 0.05, "n": 100, "checkpoint_version": "x",
                        "lineage": {"soup": spec}})
    return out


def _complete(experts: list[str]) -> dict[frozenset, dict[str, float]]:
    # additive per benchmark: an expert's contribution is known exactly
    worth = {"chartqa": dict(zip(experts, [0.3, 0.1, -0.05])), "docvqa": dict(zip(experts, [0.0, 0.2, 0.1]))}
    return {frozenset(c): {b: 0.2 + sum(w[e] for e in c) for b, w in worth.items()}
            for k in range(1, len(experts) + 1) for c in combinations(experts, k)}


def test_the_mixing_table_lists_uniform_soups_by_subset_with_their_average():
    experts = ["chart-expert", "doc-expert", "ocr-expert"]
    summaries = _summaries(_complete(experts)) + [
        {"checkpoint": "ck-00", "benchmark": "chartqa", "score": 0.9, "ci95_low": 0.8, "ci95_high": 1.0, "n": 5,
         "lineage": {"training_run": "r"}}]
    summaries += _summaries({frozenset(experts[:2]): {"chartqa": 0.99}}, weights={frozenset(experts[:2]): [0.7, 0.3]})
    rows = soup_rows(summaries)
    assert rows.height == 7 * 2 + 1 and "ck-00" not in rows["soup"].to_list()       # the plain checkpoint is not a soup
    table = subset_table(rows)
    assert table.height == 7                                                        # the weighted soup is not a subset
    row = table.filter(pl.col("label") == "chart+doc").row(0, named=True)
    assert row["size"] == 2 and row["experts"] == ["chart-expert", "doc-expert"]
    assert row["chartqa"] == pytest.approx(0.6) and row["docvqa"] == pytest.approx(0.4)
    assert row[AVERAGE] == pytest.approx(0.5)

    best = {r["benchmark"]: r for r in best_mixtures(table).iter_rows(named=True)}
    assert best["chartqa"]["best"] == "chart+doc" and best["chartqa"]["score"] == pytest.approx(0.6)
    assert best["docvqa"]["best"] == "doc+ocr" and best["docvqa"]["best_single"] == "doc"
    assert best[AVERAGE]["best"] == "chart+doc+ocr" and best[AVERAGE]["score"] == pytest.approx(0.525)

    gains = {(r["expert"], r["benchmark"]): r for r in marginal_contributions(table).iter_rows(named=True)}
    assert gains[("chart", "chartqa")]["mean_gain"] == pytest.approx(0.3) and gains[("chart", "chartqa")]["pairs"] == 3
    assert gains[("ocr", "docvqa")]["mean_gain"] == pytest.approx(0.1)
    assert gains[("ocr", AVERAGE)]["mean_gain"] == pytest.approx(0.025)


def test_a_subset_missing_a_benchmark_has_no_average_and_the_search_replay_refuses_the_table():
    experts = ["a", "b", "c"]
    scores = _complete(experts)
    del scores[frozenset(["a", "c"])]["docvqa"]
    table = subset_table(soup_rows(_summaries(scores)))
    assert table.filter(pl.col("label") == "a+c")[AVERAGE].to_list() == [None]
    with pytest.raises(ValueError, match="1 of 7 are missing"):
        search_report(table)


def test_the_search_report_replays_the_searches_against_the_exhaustive_best():
    scores = {s: {"chartqa": diluted(s), "docvqa": diluted(s)} for k in range(1, 9)
              for s in map(frozenset, combinations(EXPERTS, k))}
    table = subset_table(soup_rows(_summaries(scores)))
    report, searches = search_report(table)
    rows = {r["search"]: r for r in report.iter_rows(named=True)}
    assert rows["exhaustive"]["evaluations"] == 255 and rows["exhaustive"]["below_exhaustive_best"] == 0
    assert rows["exhaustive"]["best"] == "e0+e1+e2+e5"
    assert rows["greedy soup"]["best"] == "e0" and rows["greedy soup"]["below_exhaustive_best"] > 0.05
    assert rows["beam search (width 3)"]["below_exhaustive_best"] == pytest.approx(0)
    assert rows["beam search (width 3)"]["fraction_of_exhaustive"] <= 0.25
    png = io.BytesIO()
    plot_mixing(table, marginal_contributions(table), searches, png)
    assert png.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_average_ranks_and_spearman_match_the_definition():
    assert average_ranks(np.array([10, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]
    x = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.2])
    assert spearman(x, x * 3 + 1) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    scipy_stats = pytest.importorskip("scipy.stats")
    y = np.array([1.0, 3.0, 2.0, 2.0, 5.0, 0.0])
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)
    assert np.isnan(spearman(x, np.ones(6)))


def test_rank_agreement_gives_rho_with_a_bootstrap_interval_over_mixtures():
    rng = np.random.default_rng(0)
    real = {f"m{i}": float(v) for i, v in enumerate(rng.random(10))}
    close = {k: v + rng.normal(0, 0.05) for k, v in real.items()}
    agreement = rank_agreement(close, real)
    assert agreement["mixtures"] == 10 and agreement["ci95_low"] <= agreement["rho"] <= agreement["ci95_high"]
    assert agreement["rho"] > 0.8
    unrelated = rank_agreement({k: float(rng.random()) for k in real}, real)
    assert unrelated["ci95_low"] < 0.5 < agreement["ci95_high"]
    assert unrelated["ci95_high"] - unrelated["ci95_low"] > 0.5           # ten mixtures cannot pin ρ down
    with pytest.raises(ValueError, match="at least 3"):
        rank_agreement({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0, "c": 3.0})


def test_with_no_soups_the_table_and_its_analyses_are_empty_and_the_plot_still_draws():
    table = subset_table(soup_rows([]))
    assert table.is_empty() and best_mixtures(table).is_empty() and marginal_contributions(table).is_empty()
    report, searches = search_report(table)
    assert report.is_empty() and searches == []
    png = io.BytesIO()
    plot_mixing(table, marginal_contributions(table), searches, png)
    assert png.getvalue()[:4] == b"\x89PNG"


def test_mixtures_are_named_by_their_sorted_domains_and_spread_over_the_ranking():
    from mm_assets.mixing.proxy import equal_share_repeats, mixture_domains, spread_over_ranking

    known = ["chart", "ocr", "caption"]
    assert mixture_domains("chart+ocr", known) == ["chart", "ocr"]
    for bad, reason in [("ocr+chart", "sorted order"), ("chart+chart", "each once"), ("chart+maps", "unknown"),
                        ("chart", "domain_expert")]:
        with pytest.raises(ValueError, match=reason):
            mixture_domains(bad, known)
    assert equal_share_repeats({"a": 1000, "b": 240, "c": 600}) == {"a": 1, "b": 4, "c": 2}
    scores = {"a": 0.9, "a+b": 0.5, "a+c": 0.7, "b+c": 0.1, "a+b+c": 0.3, "a+b+c+d": 0.6, "b+d": 0.2}
    # the six of 2+ domains by score: a+c .7, a+b+c+d .6, a+b .5, a+b+c .3, b+d .2, b+c .1
    assert spread_over_ranking(scores, 3) == ["a+c", "a+b", "b+c"]         # places 0, 2 (of 0..5), 5
    assert spread_over_ranking(scores, 10) == ["a+c", "a+b+c+d", "a+b", "a+b+c", "b+d", "b+c"]
    assert spread_over_ranking(scores, 1) == ["a+c"]


def test_only_runs_of_the_current_start_and_budget_are_compared():
    """A home where the mixing settings changed holds experts and mixtures of an earlier start:
    the sweep, the table and the proxy check take only those of the current start and budget."""
    start, old = {"name": "mixstart-b", "version": "v2"}, {"name": "mixstart-a", "version": "v1"}
    runs = {"chart": {"name": "expert-chart-2", "start": start, "budget_tokens": 1000},
            "ocr": {"name": "expert-ocr-2", "start": start, "budget_tokens": 1000},
            "caption": {"name": "expert-caption-1", "start": old, "budget_tokens": 1000},
            "detection": {"name": "expert-detection-1", "start": {**start, "version": "v1"}, "budget_tokens": 1000},
            "general": {"name": "expert-general-1", "start": start, "budget_tokens": 500}}
    current, stale = of_start(runs, {**start, "checkpoint": "ignored"}, 1000)
    assert sorted(current) == ["chart", "ocr"] and stale == ["caption", "detection", "general"]

    rows = pl.DataFrame([{"soup": f"soup-{'+'.join(ex)}", "experts": ex} for ex in
                         (["expert-chart-2"], ["expert-chart-2", "expert-ocr-2"], ["expert-caption-1", "expert-chart-2"],
                          ["expert-caption-1"])])
    kept = of_experts(rows, {"expert-chart-2", "expert-ocr-2"})
    assert kept["soup"].to_list() == ["soup-expert-chart-2", "soup-expert-chart-2+expert-ocr-2"]
