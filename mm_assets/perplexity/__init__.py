"""Perplexity filtering (DFN-style): a reference VLM trained on a trusted pool scores every
sample by the mean NLL of its assistant tokens; recipes keep a fraction or a slice.

Plain functions, no Dagster import: :mod:`.reference` trains the default reference model,
:mod:`.score` scores shards, :mod:`.decide` turns scores into per-sample decisions.
"""

from .decide import keep_rates_by_domain, perplexity_decisions
from .reference import train_reference_model
from .score import score_shards

__all__ = ["keep_rates_by_domain", "perplexity_decisions", "score_shards", "train_reference_model"]
