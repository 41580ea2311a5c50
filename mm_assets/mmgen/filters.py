"""Filtering generations: near-duplicates by SemDeDup's rule on their embeddings as samples —
image and text together (the subgroup plays SemDeDup's cluster) —, outliers by perplexity under
the reference model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def duplicates_within_groups(vectors: np.ndarray, groups: Sequence[str], eps: float) -> list[int | None]:
    """For each row, the index of an earlier row of its group whose cosine similarity exceeds
    1 − `eps` (SemDeDup's reference rule: a row is removed when its maximum similarity to any
    earlier row of its cluster is above the threshold), else None. Rows are L2-normalised here."""
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) != len(groups):
        raise ValueError(f"{len(x)} vectors for {len(groups)} rows")
    if len(x) == 0:
        return []
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out: list[int | None] = [None] * len(x)
    for g in sorted(set(groups)):
        idx = np.asarray([i for i, h in enumerate(groups) if h == g])
        sims = x[idx] @ x[idx].T
        for a in range(1, len(idx)):
            j = int(np.argmax(sims[a, :a]))
            if sims[a, j] > 1.0 - eps:
                out[int(idx[a])] = int(idx[j])
    return out


def sample_vectors(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """A generated sample's embedding: its source image's and its text's unit vectors side by
    side, so that the cosine of two samples is the mean of their image and their text cosines.
    Text alone would call "How many circles are there? 5" about two different pictures one
    sample twice (the template's and the drawn generator's questions repeat by design); a
    duplicate must repeat both what is shown and what is said."""
    def unit(x):
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    if len(image) != len(text):
        raise ValueError(f"{len(image)} image vectors for {len(text)} texts")
    return np.concatenate([unit(image), unit(text)], axis=1)


def perplexity_outliers(nll: Sequence[float | None], groups: Sequence[str], keep_fraction: float) -> list[bool]:
    """Whether each row is an outlier: within its group, all but the ceil(`keep_fraction` · n)
    rows of lowest mean NLL (unscored rows are outliers)."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    out = [False] * len(nll)
    for g in sorted(set(groups)):
        idx = [i for i, h in enumerate(groups) if h == g]
        scored = sorted((i for i in idx if nll[i] is not None and math.isfinite(nll[i])), key=lambda i: (nll[i], i))
        keep = set(scored[:math.ceil(keep_fraction * len(idx))])
        for i in idx:
            out[i] = i not in keep
    return out


def nll_of_records(model, processor, records: Sequence[tuple[str, dict, bytes]], batch_size: int = 8
                   ) -> list[float | None]:
    """Mean NLL per answer token of generated records (id, record, image bytes) under a
    LLaVA-format model, conditioned on the image and the prompt; None where it cannot be encoded."""
    from mm_assets.perplexity.score import context_length, encode_chunk, nll_of_samples, pad_token_id

    model.eval()
    rows, encoded, slots = encode_chunk(processor, context_length(model),
                                        [(rid, rec, [img]) for rid, rec, img in records])
    out: list[float | None] = [None] * len(rows)
    for slot, (total, n) in zip(slots, nll_of_samples(model, encoded, pad_token_id(processor), batch_size)):
        out[slot] = total / n if n else None
    return out
