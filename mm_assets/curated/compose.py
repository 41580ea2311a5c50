"""Apply a recipe's step decisions, in order, to one domain's samples (plain Python).

The step interface: every curation step has an expensive, recipe-independent scores asset and
a cheap per-recipe decisions asset whose table has `STEP_DECISION_COLUMNS` for every sample of
the pool (decided on the full pool, so each step's decisions are cached independently of the
others). Composition is in recipe order: a sample leaves at the first step that drops it;
`rewrite` decisions travel with the sample, an `upsample` decision multiplies its copies by the
table's `copies` column (2 when absent); generated samples (`mmgen`) are added by
`add_generated`. Domain weights come last: a weight w
keeps floor(w) copies of each surviving sample plus one more for a fraction w − floor(w) of
them, chosen by a hash of the sample id (so the choice is stable across recipes and runs).
"""

from __future__ import annotations

import hashlib
import math

import polars as pl

from mm_assets.curated.ledger import FINAL_STEP, LEDGER_SCHEMA, STEP_DECISION_COLUMNS


class DecisionError(ValueError):
    pass


def _unit_interval(sample_id: str) -> float:
    return int.from_bytes(hashlib.sha256(f"domain-weight/{sample_id}".encode()).digest()[:8], "big") / 2.0 ** 64


def weight_copies(sample_id: str, weight: float) -> int:
    whole = math.floor(weight)
    return whole + (1 if _unit_interval(sample_id) < weight - whole else 0)


def compose(sample_ids: list[str], recipe: str, steps: list[tuple[str, pl.DataFrame]],
            domain_weight: float = 1.0, weights_hash: str | None = None) -> tuple[pl.DataFrame, dict[str, int]]:
    """The ledger rows of one domain's samples and the number of copies each keeps (0 = out)."""
    base = pl.DataFrame({"sample_id": sample_ids}, schema={"sample_id": pl.String})
    parts = []
    out_at: dict[str, str] = {}
    factor = dict.fromkeys(sample_ids, 1)
    for kind, decisions in steps:
        missing_cols = set(STEP_DECISION_COLUMNS) - set(decisions.columns)
        if missing_cols:
            raise DecisionError(f"{kind} decisions lack columns {sorted(missing_cols)}")
        twice = decisions.filter(pl.col("sample_id").is_duplicated())["sample_id"]
        if len(twice):
            raise DecisionError(f"{kind}: {len(twice)} decision rows for duplicated sample ids, e.g. {twice[0]} — "
                                "a step decides each sample once")
        rows = base.join(decisions.select(STEP_DECISION_COLUMNS).drop("domain"), on="sample_id", how="left")
        undecided = rows.filter(pl.col("decision").is_null())["sample_id"]
        if len(undecided):
            raise DecisionError(f"{kind}: no decision for {len(undecided)} sample(s), e.g. {undecided[0]} — "
                                f"the {kind} decisions are older than the samples; re-materialize them")
        ups = decisions.select("sample_id", "copies") if "copies" in decisions.columns else None
        copies_of = dict(ups.filter(pl.col("copies").is_not_null()).iter_rows()) if ups is not None else {}
        for sid, decision, reason in rows.select("sample_id", "decision", "reason").iter_rows():
            if decision == "drop" and sid not in out_at:
                out_at[sid] = f"dropped by {kind}: {reason}"
            elif decision == "upsample":
                factor[sid] *= int(copies_of.get(sid, 2))
        parts.append(rows.with_columns(pl.lit(recipe).alias("recipe"), pl.lit(kind).alias("step")))
    copies = {sid: (0 if sid in out_at else factor[sid]) for sid in sample_ids}
    if domain_weight != 1.0:
        rows = []
        for sid in sample_ids:
            n = weight_copies(sid, domain_weight)
            decision = "drop" if n == 0 else ("upsample" if n > 1 else "keep")
            rows.append((sid, recipe, "domain_weights", weights_hash, domain_weight, decision,
                         f"domain weight {domain_weight:g}: {n} cop{'y' if n == 1 else 'ies'}", None))
            if copies[sid]:
                copies[sid] *= n
                if n == 0:
                    out_at[sid] = f"dropped by domain_weights: weight {domain_weight:g}"
        parts.append(pl.DataFrame(rows, schema=LEDGER_SCHEMA, orient="row"))
    final = []
    for sid in sample_ids:
        n = copies[sid]
        if n:
            reason = "in the curated dataset" + (f" ({n} copies)" if n > 1 else "")
        else:
            reason = out_at[sid]
        final.append((sid, recipe, FINAL_STEP, None, None, "in" if n else "out", reason, None))
    parts.append(pl.DataFrame(final, schema=LEDGER_SCHEMA, orient="row"))
    ledger = pl.concat([p.select(list(LEDGER_SCHEMA)).cast(LEDGER_SCHEMA) for p in parts])
    return ledger, copies


def add_generated(generated: pl.DataFrame, copies: dict[str, int], recipe: str, params_hash: str
                  ) -> tuple[dict[str, list[tuple[str, bytes]]], pl.DataFrame]:
    """The generated samples (`mmgen`'s `generated.parquet` rows of one domain) that join the
    curated dataset — one copy each, written next to their source, only when the source itself
    is in — and their ledger rows: the `mmgen` row (`generate`, or `reject` with the reason of
    validation or a filter — never `drop`, which removes a pool sample) and the final `curated`
    row, for every generated sample, kept or not."""
    additions: dict[str, list[tuple[str, bytes]]] = {}
    rows = []
    for r in generated.sort("gen_id").iter_rows(named=True):
        gid, source = r["gen_id"], r["source_sample_id"]
        what = f"for {r['subgroup']} from {source} (reference item {r['reference_item_id']})"
        if not r["ok"]:
            step_row = ("reject", f"generated {what}: rejected, {r['reason']}")
            final = ("out", "rejected by validation")
        elif r["duplicate_of"] is not None:
            step_row = ("reject", f"generated {what}: near duplicate of {r['duplicate_of']}")
            final = ("out", "dropped by mmgen: near duplicate")
        elif r["perplexity_outlier"]:
            step_row = ("reject", f"generated {what}: perplexity outlier (nll {r['nll']})")
            final = ("out", "dropped by mmgen: perplexity outlier")
        elif not copies.get(source, 0):
            step_row = ("generate", f"generated {what}")
            final = ("out", f"its source {source} is not in the curated dataset")
        else:
            step_row, final = ("generate", f"generated {what}"), ("in", "in the curated dataset (generated)")
            additions.setdefault(source, []).append((gid, r["json"].encode()))
        rows.append((gid, recipe, "mmgen", params_hash, r["nll"], step_row[0], step_row[1], source))
        rows.append((gid, recipe, FINAL_STEP, None, None, final[0], final[1], source))
    return additions, pl.DataFrame(rows, schema=LEDGER_SCHEMA, orient="row")
