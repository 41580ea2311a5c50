"""The `oracle` recipe step: the upper bound, not a curation method. It drops exactly the
generated data's planted defects — the low-quality records, every near-duplicate beyond one
copy per group, the leaked eval items — read from the planted truth (no Dagster).

It is the only step whose decisions read the planted truth (`reads_planted_truth=True`; a test
keeps every other reader to reports); every other step decides blind to it. On real data there
is no truth and the step refuses to run. A recipe with this step is labelled
"(reads planted truth)" wherever it is shown (`mm_assets.steps.recipe_label`).

`planted_defects` is the algorithm, a plain function that reports can reuse (e.g. to split a
recipe's removals by defect kind).
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import Field, field_validator

from mm_assets.curation_step import CurationStep, Decided, Section, StepInputs
from mm_assets.planted import sample_id_by_ordinal
from mm_assets.recipes.params import StepParams

DEFECT_KINDS = ("low_quality", "near_duplicate", "leaked_eval_item")
ORACLE_LABEL = "oracle (reads planted truth) — upper bound, not a curation method"
NO_TRUTH = "oracle needs the generated data's planted truth; it cannot run on real data"
DEFECTS_SCHEMA = {"sample_id": pl.String, "defect": pl.String, "detail": pl.String, "related_id": pl.String}

Defect = Literal["low_quality", "near_duplicate", "leaked_eval_item"]


class OracleParams(StepParams):
    """Which planted defects to drop; the default, all three, is the upper bound."""
    defects: list[Defect] = Field(default_factory=lambda: list(DEFECT_KINDS), min_length=1)

    @field_validator("defects")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("a defect kind is listed twice")
        return v


def planted_defects(truth: dict, samples: pl.DataFrame, source_name: str = "main") -> pl.DataFrame:
    """The planted defects among the ingested samples: `sample_id, defect, detail, related_id`,
    one row per defective sample (`defect` in `DEFECT_KINDS`; a record planted twice counts
    once, leaked before low-quality before near-duplicate).

    A near-duplicate group keeps exactly one copy: its original when it was ingested and is no
    other defect, else its first such duplicate; every other ingested member is a
    `near_duplicate` whose `related_id` is the kept copy. Refs without an ingested sample
    (quarantined records) are skipped. `samples` has `sample_id`, `source_name`, `ordinal`."""
    by_ordinal = sample_id_by_ordinal(samples, source_name)
    rows: dict[str, tuple[str, str, str | None]] = {}

    def add(sid: str | None, defect: str, detail: str, related: str | None = None) -> None:
        if sid is not None and sid not in rows:
            rows[sid] = (defect, detail, related)

    for x in truth["leaked_eval_items"]:
        add(by_ordinal.get(x["ref"]["ordinal"]), "leaked_eval_item", f"{x['benchmark']} item {x['item_id']}")
    for x in truth["low_quality"]:
        add(by_ordinal.get(x["ref"]["ordinal"]), "low_quality", x["kind"])
    for g in truth["near_duplicate_groups"]:
        members = [by_ordinal[r["ordinal"]] for r in (g["original"], *g["duplicates"]) if r["ordinal"] in by_ordinal]
        kept = next((m for m in members if m not in rows), None)
        for m in members:
            if m != kept:
                add(m, "near_duplicate", f"group {g['group_id']} ({g['kind']})", kept)
    return pl.DataFrame([(sid, *v) for sid, v in rows.items()], schema=DEFECTS_SCHEMA, orient="row")


def planted_defect_ids(truth: dict, samples: pl.DataFrame, source_name: str = "main") -> dict[str, str]:
    """sample_id -> defect kind of every planted defect among the ingested samples."""
    d = planted_defects(truth, samples, source_name)
    return dict(zip(d["sample_id"].to_list(), d["defect"].to_list()))


def decide(inputs: StepInputs) -> Decided:
    if inputs.truth is None:
        raise ValueError(f"recipe {inputs.recipe}: {NO_TRUTH} (planted-truth file: "
                         f"{inputs.planted_truth or 'none configured'})")
    wanted = list(inputs.params.defects)
    defects = planted_defects(inputs.truth, inputs.pool)
    kept_copies = (defects.filter((pl.col("defect") == "near_duplicate") & pl.col("related_id").is_not_null())
                   .group_by("related_id").agg(pl.col("detail").first().alias("kept_copy_of"))
                   .rename({"related_id": "sample_id"}))
    defect, detail = pl.col("defect"), pl.col("detail")
    dropped = defect.is_in(wanted).fill_null(False)
    reason = (pl.when(defect == "low_quality").then(pl.format("planted low-quality record ({})", detail))
              .when(defect == "leaked_eval_item").then(pl.format("planted leaked eval item ({})", detail))
              .when(defect == "near_duplicate").then(pl.format("planted near-duplicate beyond the kept copy of {}",
                                                               detail))
              .when(pl.col("kept_copy_of").is_not_null())
              .then(pl.format("the one kept copy of planted near-duplicate {}", pl.col("kept_copy_of")))
              .otherwise(pl.lit("not a planted defect")))
    reason = (pl.when(defect.is_not_null() & ~dropped)
              .then(pl.format("{}; kept: this oracle drops only {}", reason, pl.lit(", ".join(wanted))))
              .otherwise(reason))
    decisions = (inputs.pool.select("sample_id", "domain")
                 .join(defects, on="sample_id", how="left").join(kept_copies, on="sample_id", how="left")
                 .select("sample_id", "domain", pl.lit(None, pl.Float64).alias("score"),
                         pl.when(dropped).then(pl.lit("drop")).otherwise(pl.lit("keep")).alias("decision"),
                         reason.alias("reason"), "related_id"))
    truth, in_pool = inputs.truth, dict(defects.group_by("defect").len().iter_rows())
    metadata = {
        "oracle": ORACLE_LABEL,
        "defects_dropped": wanted,
        "planted": {"low_quality": len(truth["low_quality"]), "leaked_eval_item": len(truth["leaked_eval_items"]),
                    "near_duplicate": sum(len(g["duplicates"]) for g in truth["near_duplicate_groups"])},
        "planted_in_pool": {k: int(in_pool.get(k, 0)) for k in DEFECT_KINDS},
        "near_duplicate_groups_in_pool": kept_copies.height,
    }
    # canary recall would be 1 by construction (the canaries are the planted low-quality records)
    return Decided(decisions, metadata=metadata, canaries=False)


STEP = CurationStep(
    kind="oracle", params=OracleParams,
    sections=(Section("oracle", "the planted defect kinds the oracle drops: read by oracle_decisions",
                      lambda p: p.model_dump(mode="json")),),
    decided_by=("oracle",),
    reads=("samples",),
    decide=decide,
    reads_planted_truth=True,
    description=f"{ORACLE_LABEL}: drops exactly the generated data's planted defects — low-quality records, every "
                "near-duplicate beyond one copy per group, leaked eval items — read from the planted truth. The only "
                "decisions that read the truth; it refuses to run on real data.",
)
