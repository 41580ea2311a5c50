"""The `length` recipe step: drop samples whose first answer is too short or too long, or
whose question is too long — a heuristic filter that needs no scores of its own (no Dagster).

It is also the README's worked example of a step: this module and one line in
`mm_assets/steps.py` are all it takes; the schema, the section asset, the decisions asset, the
jobs, the automation target and the curated dataset's inputs follow from the registry.
"""

from __future__ import annotations

from typing import Annotated

import polars as pl
from pydantic import Field, model_validator

from mm_assets.curation_step import CurationStep, Decided, Section, StepInputs
from mm_assets.recipes.params import StepParams

Chars = Annotated[int, Field(ge=0, le=10_000_000)]


class LengthParams(StepParams):
    min_answer_chars: Chars = 1
    max_answer_chars: Chars | None = None
    max_question_chars: Chars | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.max_answer_chars is not None and self.max_answer_chars < self.min_answer_chars:
            raise ValueError("max_answer_chars is below min_answer_chars")
        return self


def decide(inputs: StepInputs) -> Decided:
    p = inputs.params
    answer, question = pl.col("answer").str.len_chars(), pl.col("question").str.len_chars()
    reason = (pl.when(answer < p.min_answer_chars).then(pl.format("answer of {} characters < {}", answer,
                                                                  pl.lit(p.min_answer_chars))))
    if p.max_answer_chars is not None:
        reason = reason.when(answer > p.max_answer_chars).then(
            pl.format("answer of {} characters > {}", answer, pl.lit(p.max_answer_chars)))
    if p.max_question_chars is not None:
        reason = reason.when(question > p.max_question_chars).then(
            pl.format("question of {} characters > {}", question, pl.lit(p.max_question_chars)))
    decisions = inputs.pool.select(
        "sample_id", "domain", answer.cast(pl.Float64).alias("score"),
        pl.when(reason.otherwise(None).is_null()).then(pl.lit("keep")).otherwise(pl.lit("drop")).alias("decision"),
        reason.otherwise(pl.format("answer of {} characters within bounds", answer)).alias("reason"),
        pl.lit(None, pl.String).alias("related_id"))
    return Decided(decisions)


STEP = CurationStep(
    kind="length", params=LengthParams,
    sections=(Section("length", "length filter bounds: read by length_decisions", lambda p: p.model_dump(mode="json")),),
    decided_by=("length",),
    reads=("samples",),
    decide=decide,
    description="A recipe's length filter: samples whose first answer is shorter or longer than the bounds, or "
                "whose question is longer, are dropped (score = answer length in characters).",
)
