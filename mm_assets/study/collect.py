"""What the ablation report reads, gathered into plain tables (no Dagster): per-item scores of
every recipe's final checkpoint per seed, which eval items were planted into training data, and
which samples each recipe's steps removed."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

SCORES_SCHEMA = {"recipe": pl.String, "seed": pl.Int64, "checkpoint": pl.String, "tokens_seen": pl.Int64,
                 "benchmark": pl.String, "item_id": pl.String, "score": pl.Float64}


def final_checkpoints(training_runs: dict[str, dict]) -> list[dict]:
    """One row per (recipe, seed): the run's final checkpoint and tokens seen. A `training_run`
    output stored before seeds (no `runs`) is one run, reported as seed 0."""
    out = []
    for recipe, run in sorted(training_runs.items()):
        for r in run.get("runs") or [{"seed": 0, "final": run["checkpoints"][-1],
                                      "tokens_seen": run.get("tokens_seen")}]:
            out.append({"recipe": recipe, "seed": int(r["seed"]), "checkpoint": r["final"],
                        "tokens_seen": r.get("tokens_seen")})
    return out


def collect_scores(finals: list[dict], benchmarks: list[str],
                   predictions: Callable[[str, str], pl.DataFrame | None]) -> tuple[pl.DataFrame, list[dict]]:
    """Per-item scores of every final checkpoint on every benchmark, and the (recipe, seed,
    benchmark) evals that do not exist yet (left out of the report, listed so nobody mistakes a
    missing eval for a result)."""
    frames, missing = [], []
    for f in finals:
        for bench in benchmarks:
            pred = predictions(f["checkpoint"], bench)
            if pred is None:
                missing.append({"recipe": f["recipe"], "seed": f["seed"], "benchmark": bench,
                                "checkpoint": f["checkpoint"]})
                continue
            frames.append(pred.select(pl.col("item_id").cast(pl.String), pl.col("score").cast(pl.Float64))
                          .with_columns(recipe=pl.lit(f["recipe"]), seed=pl.lit(f["seed"], pl.Int64),
                                        checkpoint=pl.lit(f["checkpoint"]),
                                        tokens_seen=pl.lit(f["tokens_seen"], pl.Int64), benchmark=pl.lit(bench))
                          .select(list(SCORES_SCHEMA)))
    scores = pl.concat(frames) if frames else pl.DataFrame(schema=SCORES_SCHEMA)
    return scores, missing


def complete_runs(scores: pl.DataFrame) -> pl.DataFrame:
    """Only (recipe, seed) runs evaluated on every benchmark present: the paired comparison needs
    every run on the same items of the same benchmarks."""
    if scores.is_empty():
        return scores
    n_bench = scores["benchmark"].n_unique()
    whole = (scores.group_by("recipe", "seed").agg(pl.col("benchmark").n_unique().alias("n"))
             .filter(pl.col("n") == n_bench).select("recipe", "seed"))
    return scores.join(whole, on=["recipe", "seed"], how="semi")


def mark_leaked(scores: pl.DataFrame, truth: dict | None) -> pl.DataFrame:
    """Adds `leaked`: the eval item was planted into the training data (generated data only).

    Eval item ids are DocVQA's questionId, else `<benchmark>-…-<row:05d>` (see
    `mm_assets.sources.eval_sets`); the truth names the benchmark, the id and the row."""
    leaked_ids, leaked_rows = set(), set()
    for x in (truth or {}).get("leaked_eval_items", []):
        leaked_ids.add((x["benchmark"], str(x["item_id"])))
        leaked_rows.add((x["benchmark"], f"{x['row_index']:05d}"))
    flags = [(b, i) in leaked_ids if b == "docvqa" else (b, i.rsplit("-", 1)[-1]) in leaked_rows
             for b, i in zip(scores["benchmark"].to_list(), scores["item_id"].to_list())]
    return scores.with_columns(leaked=pl.Series(flags, dtype=pl.Boolean))


def defect_kinds(defects: pl.DataFrame) -> pl.DataFrame:
    """`sample_id, defect_kind` of the planted defects (`oracle.step.planted_defects`) as the
    removal split reports them: refusals apart from the other low-quality records, since whether
    a blind step catches them differs."""
    return defects.select("sample_id", pl.when(pl.col("detail") == "refusal").then(pl.lit("low_quality: refusal"))
                          .otherwise(pl.col("defect")).alias("defect_kind"))


def removed_by_step(ledgers: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """`step` (`<recipe>: <step>`), `sample_id` of every sample a recipe's step dropped, from the
    recipes' ledgers (a sample leaves at the first step that drops it)."""
    frames = [ledger.filter((pl.col("decision") == "drop") & (pl.col("step") != "curated"))
              .select(pl.format("{}: {}", pl.lit(recipe), pl.col("step")).alias("step"), "sample_id")
              for recipe, ledger in sorted(ledgers.items())]
    return pl.concat(frames).unique(maintain_order=True) if frames else \
        pl.DataFrame(schema={"step": pl.String, "sample_id": pl.String})
