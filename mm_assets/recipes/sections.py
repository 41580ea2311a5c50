"""A recipe split into the sections that each downstream step reads, each with its own hash.

The hash of a section is the Dagster data version of `recipe/<section>[recipe]`, so editing one
parameter invalidates only the steps that read it: a new SemDeDup target changes
`semdedup_threshold` (the keep mask re-thresholds stored scores) but not `semdedup_clustering`
(k-means and pairwise scores are untouched). Hashes are taken over the parsed values, so key
order, comments and number spelling (`0.1` vs `0.10`) never change them.
"""

from __future__ import annotations

from mm_assets.metadata import content_digest
from mm_assets.recipes.schema import Recipe, RecipeError

SECTIONS = ("semdedup_clustering", "semdedup_threshold", "perplexity_scoring", "perplexity_selection",
            "relevance", "rephrase", "mining_neighbours", "mining", "decontamination", "plan")


def _params(recipe: Recipe, kind: str):
    step = recipe.step(kind)
    return step.model_dump(mode="json") if step is not None else None


def section_values(recipe: Recipe) -> dict[str, object]:
    sd, ppl = recipe.step("semdedup"), recipe.step("perplexity")
    return {
        "semdedup_clustering": sd.clustering() if sd else None,
        "semdedup_threshold": sd.threshold() if sd else None,
        # which reference model scores the pool (expensive) vs which scored samples are kept (cheap)
        "perplexity_scoring": {"scorer": ppl.scorer} if ppl else None,
        "perplexity_selection": ppl.model_dump(mode="json") if ppl else None,
        "relevance": _params(recipe, "relevance"),
        "rephrase": _params(recipe, "rephrase"),
        # how many neighbours must be stored (eval_neighbours) vs what the recipe does with them
        "mining_neighbours": {"k": recipe.step("mining").k} if recipe.step("mining") else None,
        "mining": _params(recipe, "mining"),
        "decontamination": _params(recipe, "decontamination"),
        # what the curated dataset reads besides the step decisions: order and mixing weights
        "plan": {"steps": [k for k, _ in recipe.steps],
                 "domain_weights": {d: w for d, w in recipe.domain_weights.items() if w != 1.0}},
    }


def section_versions(recipe: Recipe | RecipeError) -> dict[str, str]:
    """Data version per section; an invalid recipe gets versions derived from its error."""
    if isinstance(recipe, RecipeError):
        bad = "invalid-" + content_digest(str(recipe))[:12]
        return {s: bad for s in SECTIONS}
    return {s: content_digest(v) for s, v in section_values(recipe).items()}


def step_params_hash(kind: str, params) -> str:
    """The ledger's `params_hash` of one step."""
    return content_digest([kind, params.model_dump(mode="json")])[:12]
