"""What every step's per-recipe decisions asset shares (the step interface's Dagster side):
the output for a recipe without the step, the decisions table written content-addressed, and
the metadata every step reports — decision counts, removal per domain, canary recall and lift.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS
from mm_assets.metadata import content_digest
from mm_assets.storage import Storage

NOT_IN_RECIPE = "not-in-recipe"


def not_in_recipe(context: dg.AssetExecutionContext, step: str) -> dg.Output[dict]:
    context.log.info(f"recipe {context.partition_key} has no {step} step: nothing to decide")
    return dg.Output({"root": None, "version": NOT_IN_RECIPE, "in_recipe": False},
                     data_version=dg.DataVersion(NOT_IN_RECIPE), metadata={"in_recipe": False})


def write_decisions(st: Storage, asset: str, recipe: str, code_version: str, params_hash: str,
                    decisions: pl.DataFrame, files: dict[str, bytes] | None = None) -> tuple[str, str]:
    """Write `decisions.parquet` (plus `files`) under a content-addressed root; returns (root,
    data version). The data version is the decisions themselves (and the extra files), so a
    parameter edit that decides the same way changes nothing downstream."""
    missing = set(STEP_DECISION_COLUMNS) - set(decisions.columns)
    if missing:
        raise ValueError(f"{asset}[{recipe}]: decisions lack columns {sorted(missing)}")
    extra = [c for c in decisions.columns if c not in STEP_DECISION_COLUMNS]
    decisions = decisions.select(*STEP_DECISION_COLUMNS, *extra).sort("sample_id")
    version = content_digest([decisions.select("sample_id", "decision", "related_id", *extra).rows(),
                              {k: content_digest(v.hex()) for k, v in (files or {}).items()}])
    root = f"{asset}/{recipe}/{content_digest([code_version, params_hash, version])}"
    st.write_parquet(f"{root}/decisions.parquet", decisions)
    for name, data in (files or {}).items():
        st.write_bytes(f"{root}/{name}", data)
    return root, version


def decisions_metadata(decisions: pl.DataFrame, canaries: tuple[list[str], str] | None) -> dict:
    """Counts per decision, removal per domain and, when there are canaries, the step's recall
    on them and its lift (recall ÷ removal fraction)."""
    from mm_assets.canaries import canary_report

    counts = dict(decisions.group_by("decision").len().sort("decision").iter_rows())
    per_domain = (decisions.group_by("domain")
                  .agg((pl.col("decision") == "drop").mean().alias("removed")).sort("domain"))
    md = {"decisions": dg.MetadataValue.json({k: int(v) for k, v in counts.items()}),
          "removal_per_domain": dg.MetadataValue.json({d: round(float(r), 4) for d, r in per_domain.iter_rows()})}
    if canaries is not None:
        ids, source = canaries
        report = canary_report(decisions, ids)
        md.update({"canary_recall": report["recall"], "canary_lift": report["lift"],
                   "canary_report": dg.MetadataValue.json(dict(report, source=source))})
    return md


def pool_samples(st: Storage, samples: dict) -> pl.DataFrame:
    """Every domain's samples table (the `samples` asset values, all partitions), as one table."""
    return pl.concat([st.read_parquet(samples[d]["root"]) for d in sorted(samples)], how="diagonal_relaxed")


def decisions_output(st: Storage, asset: str, recipe: str, code_version: str, params_hash: str,
                     decisions: pl.DataFrame, canaries: tuple[list[str], str] | None = None,
                     files: dict[str, bytes] | None = None, metadata: dict | None = None) -> dg.Output[dict]:
    """Write a step's decisions for a recipe and return the asset's output: the pointer, the
    data version (the decisions themselves) and the shared metadata plus the step's own."""
    root, version = write_decisions(st, asset, recipe, code_version, params_hash, decisions, files)
    md = {"uri": st.uri(root), "in_recipe": True, "params_hash": params_hash,
          **decisions_metadata(decisions, canaries), **(metadata or {})}
    return dg.Output({"root": root, "version": version, "in_recipe": True}, data_version=dg.DataVersion(version),
                     metadata=md)
