"""Attention over packed rows computed one sample at a time (the CPU counterpart of varlen flash
attention).

A packed row of ``max_len`` tokens holds several samples; the block-diagonal 4D mask keeps them
apart, but the CPU attention kernels still compute every masked-out block: a 512-token row of
five 100-token samples pays for 512² scores to use about 5 × 100². Measured on the demo's
baseline data (rows of 512, mean sample about 100 tokens), attention forward and backward were
42 % of a training step's time. Here each sample's span (``Batch.spans``) runs its own causal
``scaled_dot_product_attention`` call, so the cost is Σ len² and the result at every sample
token is the same attention the mask allowed (tested against the masked path); padding positions
get zeros (they carry no label and no sample attends them).

Used by the trainer through the ``AttentionInterface`` name :data:`NAME`, set on the language
model's config only (the vision tower keeps its own implementation); any call without
``packed_segments`` (evaluation, generation, a padded batch) falls back to SDPA with the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

NAME = "mm_packed_segments"


def segment_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      packed_segments: Sequence[Sequence[tuple[int, int]]] | None = None,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """``query``/``key``/``value``: ``(B, heads, T, head_dim)``; ``packed_segments[r]``: the
    ``(start, end)`` of each sample in row ``r``, in order from 0. Returns ``(B, T, heads,
    head_dim)`` as the SDPA implementation does."""
    if packed_segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    for r, spans in enumerate(packed_segments):
        ends = [0] + [stop for _, stop in spans[:-1]]
        if [start for start, _ in spans] != ends:
            raise ValueError(f"row {r}: segments must tile the row from 0, got {list(spans)}")
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    p = dropout if module.training else 0.0
    b, heads, t, _ = query.shape
    rows = []
    for r, spans in enumerate(packed_segments):
        pieces, end = [], 0
        for start, stop in spans:
            q, k, v = query[r:r + 1, :, start:stop], key[r:r + 1, :, start:stop], value[r:r + 1, :, start:stop]
            pieces.append(F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, scale=scaling))
            end = stop
        if end < t:
            pieces.append(value.new_zeros(1, heads, t - end, value.shape[-1]))
        rows.append(torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0])
    out = torch.cat(rows, dim=0) if b > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


def use_segment_attention(model) -> None:
    """Switch the language model of a LLaVA-style model to :func:`segment_attention` (the vision
    tower keeps its own); calls that pass ``packed_segments`` then attend within each sample."""
    model.set_attn_implementation({"text_config": NAME})


def packed_segments(spans: Sequence[Sequence[tuple[int, int, str]]]) -> list[list[tuple[int, int]]]:
    """``Batch.spans`` (start, end, sample id) -> the ``(start, end)`` pairs the attention takes."""
    return [[(a, b) for a, b, _ in row] for row in spans]


AttentionInterface.register(NAME, segment_attention)
