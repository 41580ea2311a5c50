"""The `relevance` recipe step: flag questions unrelated to their image from the stored
relevance scores (no Dagster)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mm_assets.curation_step import CurationStep, Decided, Section, StepInputs
from mm_assets.recipes.params import StepParams


class RelevanceParams(StepParams):
    """Flag image rows whose question is unrelated to the image (SigLIP2 question-image
    similarity profile, z-scored within the domain); `remove: false` only reports the flags."""
    remove: bool = True
    rule: Literal["specificity", "calibrated", "either"] = "specificity"
    z_threshold: Annotated[float, Field(ge=-10.0, le=0.0, allow_inf_nan=False)] = -2.5
    max_flag_rate: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.05


def decide(inputs: StepInputs) -> Decided:
    import polars as pl

    from mm_assets.relevance.flag import catch_report, flag_unrelated, planted_unrelated, relevance_decisions

    step, st = inputs.params, inputs.storage
    pointers = inputs.pointers("relevance_scores")
    scores = pl.concat([st.read_parquet(f"{pointers[d]['root']}/scores.parquet") for d in sorted(pointers)])
    flags = flag_unrelated(scores, rule=step.rule, z_threshold=step.z_threshold, max_flag_rate=step.max_flag_rate)
    flagged = flags.filter(pl.col("flagged"))
    metadata = {
        "flagged": flagged.height, "flag_rate": flagged.height / max(1, flags.height),
        "flagged_per_domain": dict(flagged.group_by("domain").len().sort("domain").iter_rows()),
        "flagged_examples": flagged.join(inputs.pool.select("sample_id", "question"), on="sample_id")
                                   .sort("score").select("sample_id", "domain", "question", "score").head(10)}
    if inputs.truth is not None:
        metadata["vs_planted_unrelated"] = catch_report(flags, planted_unrelated(inputs.truth, inputs.pool))
    decisions = relevance_decisions(flags, inputs.pool, remove=step.remove, params_hash=STEP.params_hash(step))
    return Decided(decisions, metadata=metadata)


STEP = CurationStep(
    kind="relevance", params=RelevanceParams,
    sections=(Section("relevance", "image-text relevance step parameters: read by relevance_decisions",
                      lambda p: p.model_dump(mode="json")),),
    decided_by=("relevance",),
    reads=("relevance_scores", "samples"),
    decide=decide,
    score_assets=("question_embeddings", "relevance_scores"), assets_module="mm_assets.relevance.assets",
    description="A recipe's image-text relevance flags on the stored scores (rule, z threshold, max flag rate per "
                "domain); flagged rows are removed when the recipe says so.",
)
