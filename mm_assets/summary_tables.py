"""The end of `mm-curation demo` and `study` as a few tables a person reads (rich): what each
recipe kept, how each curation step did against the planted truth, and every recipe's scores
with its paired difference to baseline and its interval. The full summary goes to a JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

BENCHMARK_HEADERS = {"countbench": "Count", "docvqa": "DocVQA", "chartqa": "ChartQA", "realworldqa": "RWQA",
                     "pixmo_points": "PixMo"}
AVERAGE = "average over benchmarks"


def _interval(mid: float | None, lo: float | None, hi: float | None, scale: float = 100.0) -> str:
    if mid is None:
        return "–"
    text = f"{mid * scale:+.1f}" + ("" if lo is None or hi is None else f" [{lo * scale:+.1f}, {hi * scale:+.1f}]")
    return f"[bold]{text}[/bold]" if lo is not None and hi is not None and (lo > 0 or hi < 0) else text


def scores_table(rows: list[dict], title: str) -> Table:
    """Recipes x benchmarks (mean over seeds), the average, the paired difference to baseline
    on the average in points with its 95 % interval (bold: it excludes 0), and the share of the
    oracle's gain the recipe recovers where that gap is established."""
    benches = [b for b in BENCHMARK_HEADERS if any(r["benchmark"] == b for r in rows)]
    by = {(r["recipe"], r["benchmark"]): r for r in rows}
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    gaps = {r: by.get((r, AVERAGE), {}).get("gap_recovered") for r in recipes}
    statuses = {by.get((r, AVERAGE), {}).get("gap_status") for r in recipes if gaps[r] is None} - {None}
    table = _table(title, caption="Δ: paired on the same eval items, bold where the interval excludes 0. "
                   + (f"Gap recovered: {', '.join(sorted(statuses))}." if statuses else ""))
    table.add_column("recipe")
    for b in benches:
        table.add_column(BENCHMARK_HEADERS[b], justify="right")
    table.add_column("avg", justify="right")
    table.add_column("Δ avg, pts [95% CI]", justify="right")
    if any(g is not None for g in gaps.values()):
        table.add_column("gap recovered", justify="right")
    for recipe in recipes:
        avg = by.get((recipe, AVERAGE), {})
        cells = [recipe, *[f"{by[(recipe, b)]['mean']:.3f}" if (recipe, b) in by else "–" for b in benches],
                 f"{avg['mean']:.3f}" if avg else "–",
                 "reference" if recipe == "baseline" else
                 _interval(avg.get("delta"), avg.get("delta_lo"), avg.get("delta_hi"))]
        if any(g is not None for g in gaps.values()):
            cells.append(f"{gaps[recipe] * 100:.0f} %" if gaps[recipe] is not None else "–")
        table.add_row(*cells)
    return table


def _table(title: str, caption: str | None = None) -> Table:
    return Table(title=title, caption=caption, title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD,
                 show_edge=False, pad_edge=False)


def curated_table(curated: dict[str, dict[str, str]], ingested: int) -> Table:
    """Samples each recipe keeps (all domains), from the demo summary's `curated_datasets`."""
    table = _table(f"Curated datasets ({ingested} samples ingested)")
    for col, justify in (("recipe", "left"), ("samples", "right"), ("vs ingested", "right")):
        table.add_column(col, justify=justify)
    for recipe, domains in curated.items():
        out = sum(d["out"] for d in domains.values())
        table.add_row(recipe, str(out), f"{(out - ingested) / ingested * 100:+.1f} %")
    return table


def steps_table(semdedup: dict, steps: dict) -> Table:
    """Each curation step against the planted truth, one line each."""
    table = _table("Curation steps against the planted truth")
    table.add_column("step")
    table.add_column("result")
    semdedup_rows: dict[tuple[str, str], list[str]] = {}     # recipes with the same result share a row
    for recipe, spaces in semdedup.items():
        for space, m in spaces.items():
            if m:
                text = (f"removed {m['achieved_removal']:.1%} for a {m['target_removal']:.0%} target; planted "
                        f"near-duplicates: recall {m['recall_vs_planted']:.2f}, "
                        f"precision {m['precision_vs_planted']:.2f}")
                semdedup_rows.setdefault((space, text), []).append(recipe)
    for (space, text), recipes in semdedup_rows.items():
        table.add_row(f"semdedup ({', '.join(recipes)}; {space})", text)
    for name, m in steps.items():
        if name.startswith("perplexity"):
            text = (f"canary recall {m['canary_recall']:.2f}, lift {m['canary_lift']:.2f} "
                    f"(kept share per domain {min(m['keep_rate_per_domain'].values()):.2f}–"
                    f"{max(m['keep_rate_per_domain'].values()):.2f})")
        elif name.startswith("relevance"):
            text = (f"caught {m['caught']}/{m['planted']} planted unrelated questions, "
                    f"flagged {m['flagged']} ({m['flag_rate']:.1%})")
        elif name.startswith("decontamination"):
            text = (f"removed {m['caught']}/{m['planted']} leaked eval items "
                    f"(recall {m['recall']:.2f}), {m['removed_not_leaked']} others")
        elif name.startswith("mining"):
            text = "share of top-10 neighbours from the benchmark's domain: " + ", ".join(
                f"{BENCHMARK_HEADERS.get(b, b)} {v:.2f}" for b, v in sorted(m.items()))
            name = "mining"
        elif name.startswith("rephrase"):
            text = f"{m['rewritten_samples']} samples rewritten, {m['rejected']} rejected, {m['from_cache']} from cache"
        else:
            text = json.dumps(m, default=str)[:100]
        table.add_row(name, text)
    return table


def print_summary(tables: list, summary: dict, json_path: Path, lines: list[str], console: Console | None = None
                  ) -> None:
    """Write the full summary to `json_path`, then print the tables and the closing lines."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    console = console or Console(width=120, soft_wrap=False)
    for table in tables:
        console.print()
        console.print(table)
    console.print()
    console.print(f"Full summary (JSON): {json_path}", highlight=False)
    for line in lines:
        console.print(line, highlight=False, markup=False)
