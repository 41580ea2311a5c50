"""The base of every recipe parameter model, and the hash a ledger row carries (no Dagster).

Strict: `yes`/`true` is not a number and '0.1' (a string) is not a fraction; unknown keys are
errors. Step modules derive their parameter models from `StepParams`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from mm_assets.metadata import content_digest

Fraction = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)]
FractionOrAll = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]


class StepParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


MODEL_FREE_BACKENDS = ("template", "drawn")


def check_model_for_backend(backend: str, model: str | None, what: str = "backend") -> None:
    """A model-free back end (`template`, MM-GEN's `drawn`) takes no `model`; a model back end
    (`hf`, `vllm`) needs one."""
    if backend in MODEL_FREE_BACKENDS and model is not None:
        raise ValueError(f"the {backend} {what} takes no model")
    if backend not in MODEL_FREE_BACKENDS and not model:
        raise ValueError(f"{what} {backend!r} needs `model`: a local model path")


def step_params_hash(kind: str, params: BaseModel) -> str:
    """The ledger's `params_hash` of one step."""
    return content_digest([kind, params.model_dump(mode="json")])[:12]
