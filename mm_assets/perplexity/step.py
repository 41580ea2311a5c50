"""The `perplexity` recipe step: keep the lowest-NLL fraction (or a third) of the stored
scores (no Dagster). The scores are `perplexity_scores[domain]`, once per scorer."""

from __future__ import annotations

from typing import Literal

from mm_assets.curation_step import CurationStep, Decided, Section, StepInputs
from mm_assets.recipes.params import FractionOrAll, StepParams
from pydantic import model_validator

CANARY_CURVE = (0.1, 0.2, 0.3, 0.5)
REFERENCE_MODEL = "tiny"   # the scorer name of the reference model trained on the trusted pool


class PerplexityParams(StepParams):
    keep_fraction: FractionOrAll | None = None
    slice: Literal["low", "mid", "high"] | None = None
    scorer: str = REFERENCE_MODEL   # the reference model trained on the trusted pool; or a checkpoint
    by_domain: bool = False     # apply the threshold within each domain (keeps the domain mix)

    @model_validator(mode="after")
    def _one_selection(self):
        if (self.keep_fraction is None) == (self.slice is None):
            raise ValueError("give exactly one of keep_fraction and slice")
        return self


def decide(inputs: StepInputs) -> Decided:
    """Global threshold by default (keep rates per domain show the re-mix), or per domain;
    with canaries, the lift the same scores would give at other removal rates."""
    import polars as pl

    from mm_assets.canaries import canary_report
    from mm_assets.perplexity.decide import keep_rates_by_domain, perplexity_decisions

    step = inputs.params
    pointers = inputs.pointers("perplexity_scores")
    missing = [d for d, p in pointers.items() if step.scorer not in p["scorers"]]
    if missing:
        raise ValueError(f"perplexity_scores holds no scores of scorer {step.scorer!r} for {missing} (recipe "
                         f"{inputs.recipe}); re-materialize perplexity_scores so it reads the current recipes")
    scores = pl.concat([inputs.storage.read_parquet(f"{p['scorers'][step.scorer]['root']}/scores.parquet")
                        for _, p in sorted(pointers.items())], how="diagonal_relaxed")
    params_hash = STEP.params_hash(step)
    decisions = perplexity_decisions(scores, keep_fraction=step.keep_fraction, slice=step.slice,
                                     params_hash=params_hash, by_domain=step.by_domain)
    curve = {}
    if inputs.canaries is not None:
        for removal in CANARY_CURVE:
            at = perplexity_decisions(scores, keep_fraction=1.0 - removal, params_hash=params_hash,
                                      by_domain=step.by_domain)
            curve[f"{removal:.0%} removed"] = {k: canary_report(at, inputs.canaries[0])[k] for k in ("recall", "lift")}
    return Decided(decisions, metadata={
        "scorer": step.scorer, "canary_lift_by_removal": curve,
        "keep_rate_per_domain": {d: round(v["keep_rate"], 4) for d, v in keep_rates_by_domain(decisions).items()}})


STEP = CurationStep(
    kind="perplexity", params=PerplexityParams,
    sections=(Section("perplexity_scoring", "perplexity scorer (the reference model): read by perplexity_scores",
                      lambda p: {"scorer": p.scorer}),
              Section("perplexity_selection", "perplexity keep fraction or slice: read by perplexity_decisions",
                      lambda p: p.model_dump(mode="json"))),
    decided_by=("perplexity_selection",),
    reads=("perplexity_scores", "samples"),
    decide=decide,
    score_assets=("trusted_pool", "reference_model", "perplexity_scores"),
    assets_module="mm_assets.perplexity.assets",
    description="A recipe's perplexity decisions on the stored scores: keep the lowest-NLL fraction, or the low / "
                "mid / high third. Reports keep rates per domain (perplexity filtering re-mixes domains) and "
                "recall and lift on the canaries.",
)
