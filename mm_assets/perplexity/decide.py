"""Perplexity decisions per recipe: cheap thresholds on stored scores (no Dagster import).

Two ways to choose, both on the samples sorted by NLL (ascending, ties broken by
``sample_id`` so the order is total and deterministic):

* ``keep_fraction=f``: keep the ``round(f * n)`` lowest-NLL samples (DFN-style: drop what the
  reference trained on clean data finds unlikely);
* ``slice="low" | "mid" | "high"``: keep that third of the sorted pool (the first
  ``round(n/3)``, the next up to ``round(2n/3)``, the rest) — "Perplexed by Perplexity"
  trains on such slices, and which one is best depends on the data.

The threshold is global over the given pool by default: perplexity filtering then re-mixes
domains (reported by :func:`keep_rates_by_domain`). ``by_domain=True`` applies the same rule
within each domain instead, which keeps every domain's share.

Samples without a score (``nll`` null: they could not be encoded) are **kept**, with reason
``not scored: <why>``. Perplexity cannot judge them, and dropping them here would hide a
data problem behind a quality filter; the ingest quarantine and the trainer's own skip
reasons are where such records are accounted for. They are not counted in ``n`` above.
"""

from __future__ import annotations

import polars as pl

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS

SLICES = ("low", "mid", "high")


def _kept_range(n: int, keep_fraction: float | None, slice_: str | None) -> tuple[int, int]:
    """``[start, end)`` of the kept run in NLL order for a pool of ``n`` scored samples."""
    if keep_fraction is not None:
        return 0, round(keep_fraction * n)
    a, b = round(n / 3), round(2 * n / 3)
    return {"low": (0, a), "mid": (a, b), "high": (b, n)}[slice_]


def _rule(keep_fraction: float | None, slice_: str | None) -> str:
    if keep_fraction is not None:
        return f"{keep_fraction * 100:g}% keep"
    return f"{slice_}-perplexity third"


def _decide_group(scored: pl.DataFrame, keep_fraction: float | None, slice_: str | None,
                  scope: str) -> pl.DataFrame:
    ordered = scored.sort(["nll", "sample_id"])
    n = ordered.height
    start, end = _kept_range(n, keep_fraction, slice_)
    nll = ordered["nll"].to_list()
    lo = nll[start] if start < end else None          # lowest kept NLL
    hi = nll[end - 1] if start < end else None        # highest kept NLL
    rule = _rule(keep_fraction, slice_)
    decisions, reasons = [], []
    for rank, x in enumerate(nll):
        kept = start <= rank < end
        decisions.append("keep" if kept else "drop")
        if lo is None:
            reasons.append(f"nll {x:.3f}: the {rule} rule keeps no sample of {n} ({scope})")
        elif kept:
            reasons.append(f"nll {x:.3f} within the {rule} range [{lo:.3f}, {hi:.3f}] ({scope})")
        elif x in (lo, hi):
            reasons.append(f"nll {x:.3f} ties a bound of the {rule} range [{lo:.3f}, {hi:.3f}]; ties are "
                           f"split in sample_id order and this one fell outside ({scope})")
        elif rank >= end:
            reasons.append(f"nll {x:.3f} above the {rule} threshold {hi:.3f} ({scope})")
        else:
            reasons.append(f"nll {x:.3f} below the {rule} range starting at {lo:.3f} ({scope})")
    return ordered.with_columns(pl.Series("decision", decisions, dtype=pl.String),
                                pl.Series("reason", reasons, dtype=pl.String))


def perplexity_decisions(scores: pl.DataFrame, keep_fraction: float | None = None, slice: str | None = None,
                         params_hash: str = "", by_domain: bool = False) -> pl.DataFrame:
    """One decision per sample of ``scores`` (columns ``sample_id``, ``domain``, ``nll``; a
    ``reason`` column, if present, explains null scores).

    Exactly one of ``keep_fraction`` (in [0, 1]) and ``slice`` (low/mid/high) is given. Returns
    the step decision columns (:data:`mm_assets.curated.ledger.STEP_DECISION_COLUMNS`) with
    ``score`` = the NLL, sorted by ``sample_id``.
    """
    if (keep_fraction is None) == (slice is None):
        raise ValueError("give exactly one of keep_fraction and slice")
    if keep_fraction is not None and not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
    if slice is not None and slice not in SLICES:
        raise ValueError(f"slice must be one of {SLICES}, got {slice!r}")
    if scores["sample_id"].is_duplicated().any():
        raise ValueError("scores hold a sample_id more than once")
    why = pl.col("reason") if "reason" in scores.columns else pl.lit(None, dtype=pl.String)
    base = scores.select(pl.col("sample_id").cast(pl.String), pl.col("domain").cast(pl.String),
                         pl.col("nll").cast(pl.Float64), why.cast(pl.String).alias("_why"))
    scored = base.filter(pl.col("nll").is_not_null() & pl.col("nll").is_not_nan())
    unscored = base.filter(pl.col("nll").is_null() | pl.col("nll").is_nan())
    if by_domain:
        parts = [_decide_group(g, keep_fraction, slice, f"domain {d}")
                 for (d,), g in scored.group_by("domain", maintain_order=True)]
    else:
        parts = [_decide_group(scored, keep_fraction, slice, "whole pool")]
    parts.append(unscored.with_columns(
        pl.lit("keep").alias("decision"),
        pl.format("not scored: {}", pl.col("_why").fill_null("no score")).alias("reason")))
    frames = [p.select("sample_id", "domain", "nll", "decision", "reason") for p in parts if p.height]
    out = pl.concat(frames, how="vertical") if frames else pl.DataFrame(
        schema={"sample_id": pl.String, "domain": pl.String, "nll": pl.Float64, "decision": pl.String,
                "reason": pl.String})
    return (out.with_columns(pl.lit(params_hash, dtype=pl.String).alias("params_hash"),
                             pl.col("nll").alias("score"), pl.lit(None, dtype=pl.String).alias("related_id"))
            .select(STEP_DECISION_COLUMNS).sort("sample_id"))


def keep_rates_by_domain(decisions: pl.DataFrame) -> dict[str, dict]:
    """``{domain: {"samples", "kept", "keep_rate"}}`` of a decisions table (any step's)."""
    agg = (decisions.group_by("domain")
           .agg(pl.len().alias("samples"), (pl.col("decision") != "drop").sum().alias("kept"))
           .sort("domain"))
    return {r["domain"]: {"samples": r["samples"], "kept": r["kept"],
                          "keep_rate": r["kept"] / r["samples"] if r["samples"] else None}
            for r in agg.iter_rows(named=True)}
