"""Sequence packing and padding collators (no Dagster import).

Packing puts several encoded samples into one row of at most ``max_len`` tokens and keeps
them independent:

* **position ids reset per sample** (``0 .. len-1`` for each sample of the row), so RoPE sees
  every sample exactly as if it ran alone;
* **no attention across packed samples**: the batch carries a 4D *additive* float mask of
  shape ``(B, 1, T, T)`` — ``0.0`` where query ``q`` may attend key ``k`` (same segment and
  ``k <= q``), ``torch.finfo(dtype).min`` elsewhere — i.e. a block-diagonal causal mask.
  transformers 5.24's ``masking_utils.create_causal_mask`` returns a user-provided 4D mask
  unchanged (``_preprocess_mask_arguments``: "If the mask is already 4D, simply return
  as-is"), and both attention back ends on CPU consume this format: ``sdpa`` passes it as
  ``attn_mask`` to ``torch.nn.functional.scaled_dot_product_attention`` with
  ``is_causal=False`` (it sets ``is_causal`` only when the mask is None), ``eager`` adds it to
  the attention scores. (A boolean 4D mask would work for sdpa but *not* for eager, which
  adds the mask; the additive float form works for both.) The trailing padding of a row is
  its own causal segment, so no query row is fully masked (no NaN), and its labels are -100.
* images: the ``pixel_values`` of the batch are the samples' images concatenated in row-major
  order (row 0's samples in order, then row 1's…), which is the order in which LLaVA's
  ``masked_scatter`` fills the ``<image>`` token positions of ``input_ids``.
* labels stay per sample; the causal-LM shift (logit at ``t`` predicts label ``t+1``) reads,
  at a boundary, the next sample's BOS label, which is -100: no loss crosses samples.

(transformers 5.24 can also derive the same block-diagonal mask itself when
``attention_mask=None`` is passed with reset ``position_ids`` and no cache —
``find_packed_sequence_indices`` — but that relies on ``use_cache=False`` and on detecting
resets; the explicit 4D mask does not, and is what the trainer uses.)

:func:`first_fit` is the deterministic greedy packer: samples are taken in the given order and
each goes into the first open row with room for it (a new row otherwise). ``window`` bounds
how many most recently opened rows stay open (``None``: all), keeping packing linear on big
datasets.

:func:`collate_padded` is the baseline: one sample per row, right padding, a 2D padding
mask, positions ``0..len-1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .data import IGNORE_INDEX, EncodedSample, StoredPixels


@dataclass
class Batch:
    input_ids: torch.Tensor            # (B, T) long
    labels: torch.Tensor               # (B, T) long, IGNORE_INDEX at masked / padding positions
    position_ids: torch.Tensor         # (B, T) long
    attention_mask: torch.Tensor       # (B, 1, T, T) additive float (packed) or (B, T) 0/1 long (padded)
    pixel_values: torch.Tensor | None  # (n_images, C, H, W), in row-major sample order
    segment_ids: torch.Tensor          # (B, T) long: index of the sample within its row, -1 = padding
    spans: list[list[tuple[int, int, str]]]  # per row: (start, end, sample_id) of each sample
    n_tokens: int                      # non-padding tokens (context + targets)
    n_targets: int                     # tokens with a label

    def model_inputs(self) -> dict:
        """Keyword arguments for ``LlavaForConditionalGeneration.forward``."""
        kw = dict(input_ids=self.input_ids, attention_mask=self.attention_mask,
                  position_ids=self.position_ids, use_cache=False)
        if self.pixel_values is not None:
            kw["pixel_values"] = self.pixel_values
        return kw


def first_fit(lengths: Sequence[int], max_len: int, window: int | None = None) -> list[list[int]]:
    """Greedy first-fit packing of items (by index, in order) into rows of capacity ``max_len``.

    Deterministic. An item longer than ``max_len`` raises. Returns rows of item indices in the
    order the rows were opened; within a row, items keep their input order.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    first_open = 0
    for i, n in enumerate(lengths):
        if n > max_len:
            raise ValueError(f"item {i} has {n} tokens > max_len {max_len}")
        if window is not None:
            first_open = max(first_open, len(rows) - window)
        for r in range(first_open, len(rows)):
            if room[r] >= n:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max_len - n)
    return rows


def block_causal_mask(segment_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, T)`` segment ids -> ``(B, 1, T, T)`` additive mask: 0 where ``k <= q`` and
    ``seg[q] == seg[k]``, ``finfo(dtype).min`` elsewhere."""
    t = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(t, t, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = same & causal
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def _cat_pixels(samples: Sequence[EncodedSample]) -> torch.Tensor | None:
    stored = [s.pixels for s in samples if s.pixels is not None]
    if not stored:
        return None
    if all(isinstance(p, StoredPixels) and p.same_map(stored[0]) for p in stored):
        # one conversion for the batch, not one per image
        return StoredPixels(torch.cat([p.levels for p in stored]), stored[0].scale, stored[0].offset).floats()
    return torch.cat([s.pixel_values for s in samples if s.pixels is not None], dim=0)


def collate_packed(rows: Sequence[Sequence[EncodedSample]], pad_id: int, max_len: int | None = None,
                   dtype: torch.dtype = torch.float32, pad_to: int | None = None) -> Batch:
    """Rows of samples (each row's total length <= ``max_len``) -> one packed :class:`Batch`.

    Rows are right-padded to the longest row (or to ``pad_to``).
    """
    lengths = [sum(s.length for s in row) for row in rows]
    if max_len is not None and max(lengths) > max_len:
        raise ValueError(f"a packed row has {max(lengths)} tokens > max_len {max_len}")
    t = max(max(lengths), pad_to or 0)
    b = len(rows)
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((b, t), dtype=torch.long)
    segment_ids = torch.full((b, t), -1, dtype=torch.long)
    spans: list[list[tuple[int, int, str]]] = []
    for r, row in enumerate(rows):
        pos, row_spans = 0, []
        for j, s in enumerate(row):
            n = s.length
            input_ids[r, pos:pos + n] = s.input_ids
            labels[r, pos:pos + n] = s.labels
            position_ids[r, pos:pos + n] = torch.arange(n)
            segment_ids[r, pos:pos + n] = j
            row_spans.append((pos, pos + n, s.sample_id))
            pos += n
        # padding: its own causal segment, positions continuing from 0 (never attended by samples)
        position_ids[r, pos:] = torch.arange(t - pos)
        spans.append(row_spans)
    # Padding gets segment id -1: a causal block of its own (same id, k <= q).
    mask = block_causal_mask(segment_ids, dtype=dtype)
    flat = [s for row in rows for s in row]
    return Batch(input_ids=input_ids, labels=labels, position_ids=position_ids, attention_mask=mask,
                 pixel_values=_cat_pixels(flat), segment_ids=segment_ids, spans=spans,
                 n_tokens=sum(lengths), n_targets=sum(s.n_targets for s in flat))


def collate_padded(samples: Sequence[EncodedSample], pad_id: int) -> Batch:
    """One sample per row, right padding to the longest sample, 2D padding mask."""
    t = max(s.length for s in samples)
    b = len(samples)
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((b, t), dtype=torch.long)
    segment_ids = torch.full((b, t), -1, dtype=torch.long)
    for r, s in enumerate(samples):
        n = s.length
        input_ids[r, :n] = s.input_ids
        labels[r, :n] = s.labels
        attention_mask[r, :n] = 1
        segment_ids[r, :n] = 0
    position_ids = torch.arange(t).expand(b, t).clone()
    return Batch(input_ids=input_ids, labels=labels, position_ids=position_ids, attention_mask=attention_mask,
                 pixel_values=_cat_pixels(samples), segment_ids=segment_ids,
                 spans=[[(0, s.length, s.sample_id)] for s in samples],
                 n_tokens=sum(s.length for s in samples), n_targets=sum(s.n_targets for s in samples))
