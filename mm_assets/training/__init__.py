"""Training stage (issue #6): plain-Python training core, no Dagster import.

* :mod:`.data` — curated WebDataset shards -> model inputs (chat template, assistant-only labels,
  exactly one BOS, pixel values);
* :mod:`.packing` — first-fit sequence packing with per-sample position ids and a
  block-diagonal causal 4D mask (no attention across packed samples), and a padding collator;
* :mod:`.schedule` — LR schedules (cosine, linear, constant) with linear warm-up;
* :mod:`.trainer` — the seeded, resumable training loop writing sealed checkpoints.
"""
