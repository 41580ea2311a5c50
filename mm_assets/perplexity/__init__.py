"""Perplexity filtering (DFN-style): a reference VLM trained on a trusted pool scores every
sample by the mean NLL of its assistant tokens; recipes keep a fraction or a slice.

Plain functions, no Dagster import: :mod:`.reference` trains the default reference model,
:mod:`.score` scores shards, :mod:`.decide` turns scores into per-sample decisions.
"""

from mm_assets.lazy_exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "decide": ("keep_rates_by_domain", "perplexity_decisions"),
    "reference": ("train_reference_model",),
    "score": ("score_shards",),
})
