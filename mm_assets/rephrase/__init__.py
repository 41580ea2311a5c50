"""Rephrasing of the text part of samples (plain Python, no Dagster import).

`backends` (template rules, transformers, vLLM), `validate` (what a rewrite must keep),
`cache` (append-only, per completed batch, in a `Storage`), `run` (selection, rephrasing,
decisions, applying rewrites to records).
"""

from .backends import (PROMPTS, HFRephraseBackend, PromptSpec, Rephraser, TemplateParaphraseBackend,
                       VLLMRephraseBackend, load_rephraser)
from .cache import RephraseCache
from .run import (rephrase_decisions, rephrase_samples, rewrites_by_sample, rewritten_record,
                  select_for_rephrase)
from .validate import validate_rewrite

__all__ = ["PROMPTS", "HFRephraseBackend", "PromptSpec", "RephraseCache", "Rephraser", "TemplateParaphraseBackend",
           "VLLMRephraseBackend", "load_rephraser", "rephrase_decisions", "rephrase_samples", "rewrites_by_sample",
           "rewritten_record", "select_for_rephrase", "validate_rewrite"]
