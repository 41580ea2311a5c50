"""The curation-step registry: one line per step (the module that declares its `STEP`), in the
order the README lists them.

Everything that needs the list of steps derives it from here: the recipe schema (which step
keys exist and their parameters), the recipe section assets, the decisions assets, the jobs,
the automation target, the in-process runner and `curated_dataset`'s inputs. Adding a step is
one module declaring a `CurationStep` (see `mm_assets/curation_step.py`) and one line below.
"""

import importlib

from mm_assets.curation_step import CurationStep

STEP_MODULES = (
    "mm_assets.dedup.step",
    "mm_assets.perplexity.step",
    "mm_assets.relevance.step",
    "mm_assets.rephrase.step",
    "mm_assets.mining.step",
    "mm_assets.decontamination.step",
    "mm_assets.length.step",
    "mm_assets.oracle.step",
    "mm_assets.mmgen.step",
)

STEPS: tuple[CurationStep, ...] = tuple(importlib.import_module(m).STEP for m in STEP_MODULES)
STEP_BY_KIND: dict[str, CurationStep] = {s.kind: s for s in STEPS}

PLANTED_TRUTH_LABEL = "reads planted truth"


def reads_planted_truth(recipe) -> bool:
    """Whether a recipe (`name`, `steps`) has a step whose decisions read the planted truth:
    an oracle, an upper bound rather than a curation method."""
    return any(STEP_BY_KIND[kind].reads_planted_truth for kind, _ in recipe.steps if kind in STEP_BY_KIND)


def recipe_label(recipe) -> str:
    """A recipe's name as reports show it: `oracle (reads planted truth)` for an oracle."""
    return f"{recipe.name} ({PLANTED_TRUTH_LABEL})" if reads_planted_truth(recipe) else recipe.name
