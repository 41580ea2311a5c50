"""The mixing resource: what the domain experts of `domain_expert[domain]` train on and for how long."""

import dagster as dg
from pydantic import Field


class MixingResource(dg.ConfigurableResource):
    """`recipe`: the curated datasets the shared start and the experts train on (default
    baseline). `start_budget_tokens`: the shared start, a short general run on every domain of
    that recipe from the base model. `expert_budget_tokens`: each expert's budget from the start,
    the same for every domain — 0: one pass over the largest domain (smaller domains repeat), as
    the users plan. `seed`: the training seed of the start and of every expert."""

    recipe: str = Field(default="baseline", description="the recipe whose curated datasets the experts train on")
    start_budget_tokens: int = Field(default=50_000, ge=1000, description="tokens of the shared start run")
    expert_budget_tokens: int = Field(default=0, ge=0, description="tokens per expert (0: the largest domain's)")
    seed: int = 0
