"""MM-GEN (Joshi et al. 2025, arXiv 2501.04155) as a recipe step: describe each target
benchmark's subgroups from its reference split, pick candidate training images near each
subgroup's reference items, generate targeted question/answer text for them, and keep the
generations that pass validation, de-duplication and the perplexity filter. Plain functions,
no Dagster: `subgroups`, `generate`, `filters`; the step is `mm_assets/mmgen/step.py`."""
