"""The ablation report's figure: delta to baseline per benchmark and on the average, with intervals."""

from __future__ import annotations

import io
import math

from mm_assets.study.statistics import AVERAGE

ORACLE_LABEL = "oracle (reads planted truth)"


def _recipe_order(result: dict) -> list[str]:
    """Single-step recipes first, then the composed `v1`, then the oracle: read left to right, each
    bar is a step, their composition, and the ceiling no real recipe can reach."""
    last = [r for r in ("v1", result["oracle"]) if r in result["recipes"]]
    return [r for r in result["recipes"] if r not in (result["baseline"], *last)] + last


def ablation_png(result: dict, title: str = "Delta to baseline") -> bytes:
    """PNG bytes of a grid of bar charts (one per benchmark, one for the average) of each recipe's
    delta to baseline with its bootstrap interval (matplotlib object API on the Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recipes = _recipe_order(result)
    panels = result["benchmarks"] + [AVERAGE]
    by_panel = {(row["benchmark"], row["recipe"]): row for row in result["rows"] + result["average"]}
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    labels = [ORACLE_LABEL if r == result["oracle"] else r for r in recipes]
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        rows = [by_panel[panel, r] for r in recipes]
        deltas = [100 * row["delta"] for row in rows]
        errors = [[100 * (row["delta"] - row["delta_lo"]) for row in rows],
                  [100 * (row["delta_hi"] - row["delta"]) for row in rows]]
        bars = ax.bar(range(len(recipes)), deltas, yerr=errors, capsize=3, color="tab:blue",
                      edgecolor="black", linewidth=0.6)
        for bar, recipe in zip(bars, recipes):
            if recipe == result["oracle"]:
                bar.set_facecolor("lightgray")
                bar.set_hatch("//")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(recipes)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("delta to baseline, points")
        n_items = rows[0]["n_items"] if rows else 0
        ax.set_title(f"{panel} ({n_items} items)", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    seed_counts = "/".join(str(n) for n in sorted(set(result["n_seeds"].values())))
    fig.suptitle(f"{title}: {result['level']:.0%} paired bootstrap intervals, B={result['n_boot']}, "
                 f"seeds per recipe: {seed_counts}", fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
