"""The curation-step registry: one line per step, in the order the README lists them.

Everything that needs the list of steps derives it from here: the recipe schema (which step
keys exist and their parameters), the recipe section assets, the decisions assets, the jobs,
the automation target, the in-process runner and `curated_dataset`'s inputs. Adding a step is
one module declaring a `CurationStep` (see `mm_assets/curation_step.py`) and one line below.
"""

from mm_assets.curation_step import CurationStep
from mm_assets.decontamination.step import STEP as decontamination
from mm_assets.dedup.step import STEP as semdedup
from mm_assets.mining.step import STEP as mining
from mm_assets.perplexity.step import STEP as perplexity
from mm_assets.relevance.step import STEP as relevance
from mm_assets.rephrase.step import STEP as rephrase

STEPS: tuple[CurationStep, ...] = (
    semdedup,
    perplexity,
    relevance,
    rephrase,
    mining,
    decontamination,
)
STEP_BY_KIND: dict[str, CurationStep] = {s.kind: s for s in STEPS}
