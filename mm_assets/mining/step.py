"""The `mining` recipe step: up-sample the training samples among each eval item's stored
top-k neighbours (no Dagster)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from mm_assets.curation_step import CurationStep, Decided, Section, StepInputs
from mm_assets.recipes.params import StepParams
from mm_assets.taxonomy import BENCHMARKS

MAX_MINING_K = 1000


class MiningParams(StepParams):
    k: Annotated[int, Field(ge=1, le=MAX_MINING_K)]
    upsample: dict[str, Annotated[float, Field(ge=1.0, le=100.0, allow_inf_nan=False)]] = {}
    space: Literal["question", "image"] = "question"

    @field_validator("upsample")
    @classmethod
    def _benchmarks(cls, v):
        unknown = sorted(set(v) - set(BENCHMARKS))
        if unknown:
            raise ValueError(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
        return v


def decide(inputs: StepInputs) -> Decided:
    import polars as pl

    from mm_assets.mining import domain_share, mining_decisions

    step = inputs.params
    neighbours = inputs.pointers("eval_neighbours")
    if step.k > neighbours["k"]:
        raise ValueError(f"recipe {inputs.recipe} asks for k={step.k} but eval_neighbours stores {neighbours['k']}; "
                         "re-materialize eval_neighbours so it reads the current recipes")
    table = inputs.storage.read_parquet(f"{neighbours['root']}/neighbours.parquet")
    decisions = mining_decisions(table, inputs.pool, k=step.k, upsample=step.upsample,
                                 params_hash=STEP.params_hash(step), space=step.space)
    copies = decisions.group_by("domain").agg(pl.col("copies").sum()).sort("domain")
    return Decided(decisions, canaries=False, metadata={
        "added_copies": int(decisions["copies"].sum() - decisions.height),
        "copies_per_domain": dict(copies.iter_rows()),
        f"top{min(10, step.k)}_from_benchmark_domain": domain_share(table, k=min(10, step.k), space=step.space)})


STEP = CurationStep(
    kind="mining", params=MiningParams,
    sections=(Section("mining_neighbours", "eval mining neighbour count k: read by eval_neighbours",
                      lambda p: {"k": p.k}),
              Section("mining", "eval mining parameters (k, up-sampling, space): read by mining_decisions",
                      lambda p: p.model_dump(mode="json"))),
    decided_by=("mining",),
    reads=("eval_neighbours", "samples"),
    decide=decide,
    score_assets=("question_embeddings", "eval_embeddings", "eval_neighbours"), assets_module="mm_assets.mining.assets",
    description="A recipe's eval mining: the training samples among the top-k neighbours of each eval item are "
                "up-sampled by the recipe's factor for that benchmark.",
)
