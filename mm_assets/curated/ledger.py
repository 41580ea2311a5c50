"""The decision ledger: one row per sample per step, and the questions it answers.

A step's decisions table (written by its `<step>_mask`/`<step>_decisions[recipe]` asset) has
the ledger columns without `recipe`/`step`; the curated dataset adds those, a `domain_weights`
row where the recipe re-weights the sample's domain, and a final `curated` row saying whether
the sample is in the curated dataset and why.
"""

from __future__ import annotations

import polars as pl

LEDGER_SCHEMA = {
    "sample_id": pl.String, "recipe": pl.String, "step": pl.String, "params_hash": pl.String,
    "score": pl.Float64, "decision": pl.String, "reason": pl.String, "related_id": pl.String,
}
# What a step's decisions asset provides for every sample of the pool.
STEP_DECISION_COLUMNS = ("sample_id", "domain", "params_hash", "score", "decision", "reason", "related_id")
STEP_DECISIONS = ("keep", "drop", "rewrite", "upsample", "generate", "reject")   # the last two: generated samples
FINAL_STEP = "curated"


def empty_ledger() -> pl.DataFrame:
    return pl.DataFrame(schema=LEDGER_SCHEMA)


def format_path(rows: pl.DataFrame) -> str:
    """A sample's path through a recipe's steps, one line per ledger row, in step order."""
    lines = []
    for r in rows.iter_rows(named=True):
        extra = []
        if r["score"] is not None:
            extra.append(f"score {r['score']:.6g}")
        if r["related_id"]:
            extra.append(f"related {r['related_id']}")
        if r["params_hash"]:
            extra.append(f"params {r['params_hash']}")
        tail = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"  {r['step']:<16} {r['decision']:<9} {r['reason']}{tail}")
    return "\n".join(lines)
