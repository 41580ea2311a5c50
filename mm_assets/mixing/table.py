"""The mixing table: every evaluated uniform soup × benchmark, the best mixtures, what each
expert adds, and how far searches get with fewer evaluations (no Dagster here).

Input: the eval records (`eval_scores`' summaries) of soup checkpoints, whose lineage names the
soup's experts (checkpoint names and versions) and weights. A subset is the set of its experts'
checkpoint names; its label is the one the soup was named with (`soup-<label>-<hash>`), else the
names joined. Weighted soups are listed with their weights and left out of the subset analyses.

- `wide`: subset × benchmark score, plus the average over the benchmarks every listed soup has.
- best mixture per benchmark and on average.
- marginal contribution of each expert: the mean of score(S ∪ {e}) − score(S) over every pair of
  evaluated soups S, S ∪ {e} (S non-empty), per benchmark and on average, with the pair count.
- searches (greedy soup, beam search) replayed on the table's averages: evaluations spent and the
  best average found, against the exhaustive best.
"""

from __future__ import annotations

import re
from typing import IO

import polars as pl

from mm_assets.mixing.search import SearchResult, beam_search, exhaustive, greedy_soup

AVERAGE = "average"
SOUP_SCHEMA = {"soup": pl.String, "label": pl.String, "experts": pl.List(pl.String), "size": pl.Int64,
               "weights": pl.List(pl.Float64), "benchmark": pl.String, "score": pl.Float64,
               "ci95_low": pl.Float64, "ci95_high": pl.Float64, "n": pl.Int64, "checkpoint_version": pl.String}
_NAMED = re.compile(r"^soup-(?P<label>.+)-[0-9a-f]{12}$")


def soup_rows(summaries: list[dict]) -> pl.DataFrame:
    """One row per soup × benchmark from eval records; records of other checkpoints are skipped."""
    rows = []
    for s in summaries:
        spec = (s.get("lineage") or {}).get("soup")
        if not spec:
            continue
        experts = [e["name"] for e in spec["experts"]]
        named = _NAMED.match(s["checkpoint"])
        rows.append({"soup": s["checkpoint"], "label": named["label"] if named else "+".join(experts),
                     "experts": sorted(experts), "size": len(experts), "weights": spec.get("weights"),
                     "benchmark": s["benchmark"], "score": s["score"], "ci95_low": s["ci95_low"],
                     "ci95_high": s["ci95_high"], "n": s["n"], "checkpoint_version": s.get("checkpoint_version")})
    return pl.DataFrame(rows, schema=SOUP_SCHEMA).sort("size", "label", "benchmark")


def of_experts(rows: pl.DataFrame, experts: set[str]) -> pl.DataFrame:
    """The soups whose experts are all among `experts` (checkpoint names): one sweep's soups and
    the searched soups of the same experts, not those of experts from another start."""
    return rows.filter(pl.col("experts").list.eval(pl.element().is_in(list(experts))).list.all())


def subset_table(rows: pl.DataFrame) -> pl.DataFrame:
    """Uniform soups, one row per subset: its label, experts, size, a column per benchmark and
    the average over the benchmarks that every subset was evaluated on (null for a subset
    missing one of them)."""
    uniform = rows.filter(pl.col("weights").is_null())
    if uniform.is_empty():
        return pl.DataFrame(schema={"label": pl.String, "experts": pl.List(pl.String), "size": pl.Int64,
                                    AVERAGE: pl.Float64})
    benches = sorted(uniform["benchmark"].unique().to_list())
    wide = uniform.with_columns(pl.col("experts").list.join("|").alias("key")).pivot(
        on="benchmark", index=["key", "label", "size"], values="score", aggregate_function="first")
    for bench in benches:
        if bench not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(bench))
    return (wide.with_columns(pl.col("key").str.split("|").alias("experts"),
                              pl.mean_horizontal(benches).alias(AVERAGE),
                              pl.any_horizontal(pl.col(benches).is_null()).alias("_missing"))
            .with_columns(pl.when(pl.col("_missing")).then(None).otherwise(pl.col(AVERAGE)).alias(AVERAGE))
            .select("label", "experts", "size", *benches, AVERAGE).sort("size", "label"))


def _scores(table: pl.DataFrame, column: str) -> dict[frozenset, float]:
    return {frozenset(r["experts"]): r[column] for r in table.select("experts", column).iter_rows(named=True)
            if r[column] is not None}


def best_mixtures(table: pl.DataFrame) -> pl.DataFrame:
    """Per benchmark and on average: the best subset, its score and the best single expert's."""
    rows = []
    for column in [c for c in table.columns if c not in ("label", "experts", "size")]:
        scored = table.filter(pl.col(column).is_not_null())
        if scored.is_empty():
            continue
        top = scored.sort([column, "size", "label"], descending=[True, False, False]).row(0, named=True)
        singles = scored.filter(pl.col("size") == 1)
        single = singles.sort(column, descending=True).row(0, named=True) if singles.height else None
        rows.append({"benchmark": column, "best": top["label"], "size": top["size"], "score": top[column],
                     "best_single": single["label"] if single else None,
                     "best_single_score": single[column] if single else None})
    return pl.DataFrame(rows, schema={"benchmark": pl.String, "best": pl.String, "size": pl.Int64,
                                      "score": pl.Float64, "best_single": pl.String,
                                      "best_single_score": pl.Float64})


def marginal_contributions(table: pl.DataFrame) -> pl.DataFrame:
    """Per expert × benchmark (and average): mean gain when the expert is added to a soup."""
    columns = [c for c in table.columns if c not in ("label", "experts", "size")]
    experts = sorted({e for es in table["experts"].to_list() for e in es})
    labels = {frozenset(r["experts"]): r["label"] for r in table.iter_rows(named=True)}
    rows = []
    for column in columns:
        scores = _scores(table, column)
        for expert in experts:
            gains = [scores[s | {expert}] - score for s, score in scores.items()
                     if expert not in s and s | {expert} in scores]
            alone = labels.get(frozenset([expert]), expert)
            rows.append({"expert": alone, "benchmark": column, "mean_gain": sum(gains) / len(gains) if gains else None,
                         "pairs": len(gains)})
    return pl.DataFrame(rows, schema={"expert": pl.String, "benchmark": pl.String, "mean_gain": pl.Float64,
                                      "pairs": pl.Int64})


def search_report(table: pl.DataFrame, widths: tuple[int, ...] = (1, 2, 3)) -> tuple[pl.DataFrame, list[SearchResult]]:
    """Greedy soup and beam searches replayed on the table's averages (a subset missing from the
    table cannot be searched: the table must be complete). Returns a row per search — evaluations
    spent, best average found, its distance to the exhaustive best — and the searches' curves."""
    scores = _scores(table, AVERAGE)
    experts = sorted({e for s in scores for e in s})
    if not experts:
        return pl.DataFrame(schema=_SEARCH_SCHEMA), []
    missing = (1 << len(experts)) - 1 - len(scores)
    if missing:
        raise ValueError(f"the search replay needs every subset of the {len(experts)} experts evaluated on every "
                         f"benchmark: {missing} of {(1 << len(experts)) - 1} are missing")
    labels = {frozenset(r["experts"]): r["label"] for r in table.iter_rows(named=True)}
    objective = scores.__getitem__
    results = [exhaustive(experts, objective), greedy_soup(experts, objective),
               *[beam_search(experts, objective, width=w) for w in widths]]
    best = results[0].score
    rows = [{"search": r.method, "evaluations": r.evaluations, "fraction_of_exhaustive": r.evaluations / len(scores),
             "best": labels[r.best], "best_average": r.score, "below_exhaustive_best": best - r.score}
            for r in results]
    return pl.DataFrame(rows, schema=_SEARCH_SCHEMA), results


_SEARCH_SCHEMA = {"search": pl.String, "evaluations": pl.Int64, "fraction_of_exhaustive": pl.Float64,
                  "best": pl.String, "best_average": pl.Float64, "below_exhaustive_best": pl.Float64}


def plot_mixing(table: pl.DataFrame, contributions: pl.DataFrame, searches: list[SearchResult], out: IO[bytes]) -> None:
    """Three panels: average score against subset size (one point per soup), each expert's mean
    gain when added (averaged over benchmarks), and best average found against evaluations spent
    for each search."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_size, gains, curves) = plt.subplots(1, 3, figsize=(12, 3.2))
    scored = table.filter(pl.col(AVERAGE).is_not_null()) if AVERAGE in table.columns else table.head(0)
    by_size.scatter(scored["size"].to_list(), scored[AVERAGE].to_list(), s=12)
    by_size.set(xlabel="experts in the soup", ylabel="average score", title="soups by size")
    average = contributions.filter((pl.col("benchmark") == AVERAGE) & pl.col("mean_gain").is_not_null())
    gains.barh(average["expert"].to_list(), average["mean_gain"].to_list())
    gains.axvline(0, color="k", lw=0.5)
    gains.set(xlabel="mean gain when added (average)", title="marginal contribution")
    for result in searches:
        curves.step([c[0] for c in result.curve], [c[1] for c in result.curve], where="post", label=result.method)
    curves.set(xlabel="soups evaluated", ylabel="best average found", title="search vs exhaustive")
    if searches:
        curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)
