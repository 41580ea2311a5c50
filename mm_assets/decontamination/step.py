"""The `decontamination` recipe step: drop training samples whose image is at least
`threshold` similar to an eval item's, from the stored nearest eval items (no Dagster)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mm_assets.curation_step import CurationStep, Decided, Section, StepInputs
from mm_assets.recipes.params import StepParams


class DecontaminationParams(StepParams):
    """Remove training samples whose image is at least `threshold` similar to an eval item's."""
    enabled: bool = True
    threshold: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.99


def decide(inputs: StepInputs) -> Decided:
    from mm_assets.mining import decontamination_decisions, decontamination_report, planted_leaks

    step, st = inputs.params, inputs.storage
    neighbours = inputs.pointers("eval_neighbours")
    nearest = st.read_parquet(f"{neighbours['root']}/nearest_eval_item.parquet")
    decisions = decontamination_decisions(nearest, inputs.pool, threshold=step.threshold, enabled=step.enabled,
                                          params_hash=STEP.params_hash(step))
    metadata = {"threshold": step.threshold, "enabled": step.enabled}
    if inputs.truth is not None:
        items = st.read_parquet(f"{neighbours['root']}/eval_items.parquet")
        metadata["vs_planted_leaks"] = decontamination_report(decisions, planted_leaks(inputs.truth, inputs.pool, items))
    return Decided(decisions, metadata=metadata)


STEP = CurationStep(
    kind="decontamination", params=DecontaminationParams,
    sections=(Section("decontamination", "decontamination parameters: read by decontamination_decisions",
                      lambda p: p.model_dump(mode="json")),),
    decided_by=("decontamination",),
    reads=("eval_neighbours", "samples"),
    decide=decide,
    score_assets=("question_embeddings", "eval_embeddings", "eval_neighbours"), assets_module="mm_assets.mining.assets",
    description="A recipe's decontamination: training samples whose image is at least `threshold` similar to an "
                "eval item's image are removed (the eval item is the related id in the ledger).",
)
