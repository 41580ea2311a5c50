"""A recipe split into the sections that each downstream step reads, each with its own hash.

The hash of a section is the Dagster data version of `recipe/<section>[recipe]`, so editing one
parameter invalidates only the steps that read it: a new SemDeDup target changes
`semdedup_threshold` (the keep mask re-thresholds stored scores) but not `semdedup_clustering`
(k-means and pairwise scores are untouched). Hashes are taken over the parsed values, so key
order, comments and number spelling (`0.1` vs `0.10`) never change them. The step sections come
from the step registry; `plan` and `training` belong to the recipe as a whole.
"""

from __future__ import annotations

from mm_assets.metadata import content_digest
from mm_assets.recipes.params import step_params_hash
from mm_assets.recipes.schema import Recipe, RecipeError
from mm_assets.steps import STEPS

RECIPE_SECTIONS = {
    "plan": "step order and domain weights: read by curated_dataset",
    "training": "automatic retraining, the token budget and the training seeds: read by training_run",
}
SECTION_DOC = {**{s.name: s.doc for step in STEPS for s in step.sections}, **RECIPE_SECTIONS}
SECTIONS = tuple(SECTION_DOC)

__all__ = ["SECTIONS", "SECTION_DOC", "section_values", "section_versions", "step_params_hash"]


def section_values(recipe: Recipe) -> dict[str, object]:
    values = {}
    for step in STEPS:
        params = recipe.step(step.kind)
        for section in step.sections:
            values[section.name] = section.value(params) if params is not None else None
    values["plan"] = {"steps": [k for k, _ in recipe.steps],
                      "domain_weights": {d: w for d, w in recipe.domain_weights.items() if w != 1.0}}
    values["training"] = recipe.training.model_dump(mode="json")
    return values


def section_versions(recipe: Recipe | RecipeError) -> dict[str, str]:
    """Data version per section; an invalid recipe gets versions derived from its error."""
    if isinstance(recipe, RecipeError):
        bad = "invalid-" + content_digest(str(recipe))[:12]
        return {s: bad for s in SECTIONS}
    return {s: content_digest(v) for s, v in section_values(recipe).items()}
