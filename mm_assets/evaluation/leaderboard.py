"""The leaderboard: every checkpoint × benchmark in one table, and score against training
tokens for each training run — runs with the same budget share their x-axis (no Dagster)."""

from __future__ import annotations

from typing import IO

import polars as pl

LEADERBOARD_SCHEMA = {"checkpoint": pl.String, "benchmark": pl.String, "metric": pl.String, "score": pl.Float64,
                      "ci95_low": pl.Float64, "ci95_high": pl.Float64, "n": pl.Int64, "training_run": pl.String,
                      "recipe": pl.String, "step": pl.Int64, "epoch": pl.Int64, "tokens_seen": pl.Int64,
                      "budget_fraction": pl.Float64, "model_id": pl.String,
                      "prompt_version": pl.String, "checkpoint_version": pl.String}


def leaderboard_table(summaries: list[dict]) -> pl.DataFrame:
    rows = []
    for s in summaries:
        lin = s.get("lineage") or {}
        rows.append({"checkpoint": s["checkpoint"], "benchmark": s["benchmark"], "metric": s["metric"],
                     "score": s["score"], "ci95_low": s["ci95_low"], "ci95_high": s["ci95_high"], "n": s["n"],
                     "training_run": lin.get("training_run"), "recipe": lin.get("recipe"),
                     "step": lin.get("step"), "epoch": lin.get("epoch"), "tokens_seen": lin.get("tokens_seen"),
                     "budget_fraction": lin.get("budget_fraction"), "model_id": s.get("model_id"),
                     "prompt_version": s.get("prompt_version"), "checkpoint_version": s.get("checkpoint_version")})
    return pl.DataFrame(rows, schema=LEADERBOARD_SCHEMA).sort("training_run", "step", "checkpoint", "benchmark",
                                                             nulls_last=True)


def plot_scores_by_tokens(table: pl.DataFrame, out: IO[bytes]) -> None:
    """One panel per benchmark; one line per training run, score against training tokens seen
    (against the step for checkpoints that do not record tokens); error bars = bootstrap 95%
    interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = table["benchmark"].unique().sort().to_list() or ["(no evals yet)"]
    fig, axes = plt.subplots(1, len(benches), figsize=(3.2 * len(benches), 2.8), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        sub = table.filter((pl.col("benchmark") == bench) & pl.col("step").is_not_null()).with_columns(
            pl.coalesce("tokens_seen", "step").alias("x"))
        for run in sub["training_run"].unique().sort(nulls_last=True).to_list():
            r = sub.filter(pl.col("training_run") == run if run is not None else pl.col("training_run").is_null())
            r = r.sort("x")
            ax.errorbar(r["x"].to_list(), r["score"].to_list(),
                        yerr=[(r["score"] - r["ci95_low"]).to_list(), (r["ci95_high"] - r["score"]).to_list()],
                        marker="o", capsize=2, label=str(run))
        ax.set_title(bench, fontsize=9)
        ax.set_xlabel("training tokens", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("score", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(handles)))
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
