"""Perplexity scores: a reference VLM's mean NLL of each sample's assistant tokens (no Dagster import).

A sample is encoded exactly as for training (:func:`mm_assets.training.data.encode_record`:
chat template, ``<image>`` expanded into the image's feature tokens, labels only on the
assistant answers and the EOS after each), so the score is the training loss the reference
model would give that sample: the NLL of every assistant token conditioned on the image
tokens and the prompt, which are themselves masked from the loss. Text-only rows carry no
image and are scored by the same model without one.

``nll`` = summed next-token NLL of the target tokens / their number (``assistant_tokens``),
in nats per token, so long and short answers are comparable.

Batching: samples are taken in shard order in chunks, packed with the trainer's first-fit
packer into rows of ``pack_len`` tokens (a longer sample gets a row of its own) and run as the
trainer runs them (:func:`mm_assets.training.trainer.target_nll`): attention within each sample
(the model is loaded with the trainer's segment attention; the block-diagonal causal mask of
:func:`mm_assets.training.packing.collate_packed` otherwise), so each sample gets the logits it
would get alone, and the LM head only at the target tokens. Per-token losses are summed per
packed segment. ``torch.no_grad``, eval mode: the same model, threads and shards give the same scores.

Pipelining: the next chunk is encoded (chat template, tokenizer, image decoding and processing)
in a worker thread while the model scores the current one (``num_workers``; 0 encodes inline).
The forward pass releases the GIL inside torch's kernels, so the encoding thread's Python work
(chat template, label spans) runs beside them; one thread only, because a fast tokenizer is not
safe to call from two threads at once. The scores do not depend on it (tested).

A record that cannot be encoded (no assistant turn, ``<image>`` count ≠ image count, corrupt
image, longer than the model's context…) is not dropped: it gets a row with ``nll`` null and
the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import polars as pl
import torch

from mm_assets.embeddings.inference import chunked
from mm_assets.prefetch import prefetch_map
from mm_assets.training.data import EncodedSample, SkipSample, encode_record, iter_shard_records
from mm_assets.training.packing import collate_packed, first_fit
from mm_assets.training.trainer import load_model_and_processor, target_nll

SCORES_SCHEMA = {"sample_id": pl.String, "domain": pl.String, "has_image": pl.Boolean,
                 "assistant_tokens": pl.Int64, "nll": pl.Float64, "reason": pl.String}


def pad_token_id(processor) -> int:
    tok = getattr(processor, "tokenizer", processor)
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def context_length(model) -> int | None:
    cfg = getattr(model.config, "text_config", model.config)
    return getattr(cfg, "max_position_embeddings", None)


def segment_sums(nll: torch.Tensor, keep: torch.Tensor, segment_ids: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed target-token NLL and target count per ``(row, segment)`` of a packed batch.

    ``nll``: the NLL at each labelled position in row-major order, ``keep`` their ``(B, T - 1)``
    mask (:func:`~mm_assets.training.trainer.target_nll`). Returns two ``(B, S)`` tensors (S =
    most segments in a row). A sample's first token is its BOS (label -100), so no term crosses
    samples.
    """
    b = keep.shape[0]
    n_seg = int(segment_ids.max()) + 1
    keep = keep.cpu()
    rows = keep.nonzero(as_tuple=True)[0]
    flat = rows * n_seg + segment_ids[:, 1:].clamp(min=0)[keep]
    sums = torch.zeros(b * n_seg, dtype=torch.float64).scatter_add_(0, flat, nll.detach().cpu().double())
    counts = torch.zeros(b * n_seg, dtype=torch.long).scatter_add_(0, flat, torch.ones_like(flat))
    return sums.view(b, n_seg), counts.view(b, n_seg)


@torch.no_grad()
def nll_of_samples(model, samples: Sequence[EncodedSample], pad_id: int, batch_size: int = 8,
                   pack_len: int = 1024) -> list[tuple[float, int]]:
    """``(summed NLL, target tokens)`` of each encoded sample, in input order."""
    if not samples:
        return []
    capacity = max(pack_len, max(s.length for s in samples))
    rows = first_fit([s.length for s in samples], capacity)
    out: list[tuple[float, int] | None] = [None] * len(samples)
    dtype = next(model.parameters()).dtype
    for k in range(0, len(rows), batch_size):
        chunk = rows[k:k + batch_size]
        batch = collate_packed([[samples[i] for i in row] for row in chunk], pad_id, dtype=dtype)
        sums, counts = segment_sums(*target_nll(model, batch), batch.segment_ids)
        for r, row in enumerate(chunk):
            for j, i in enumerate(row):
                out[i] = (float(sums[r, j]), int(counts[r, j]))
    return out  # type: ignore[return-value]


def encode_chunk(processor, max_len: int | None, chunk: Sequence[tuple[str, dict | None, list[bytes]]]
                 ) -> tuple[list[dict], list[EncodedSample], list[int]]:
    """Score rows (``nll`` still empty) of a chunk of shard records, the encoded samples, and the
    row index of each encoded sample; a record that cannot be encoded gets its reason instead."""
    rows: list[dict] = []
    encoded: list[EncodedSample] = []
    slots: list[int] = []
    for key, record, images in chunk:
        sample_id = record.get("sample_id", key) if isinstance(record, dict) else key
        domain = record.get("domain") if isinstance(record, dict) else None
        row = {"sample_id": sample_id, "domain": domain, "has_image": bool(images),
               "assistant_tokens": None, "nll": None, "reason": None}
        try:
            encoded.append(encode_record(processor, key, record, images, max_len=max_len))
            slots.append(len(rows))
        except SkipSample as exc:
            row["reason"] = str(exc)
        rows.append(row)
    return rows, encoded, slots


def score_with_model(model, processor, shard_paths: Iterable[str | Path], batch_size: int = 8,
                     pack_len: int = 1024, chunk_size: int = 256,
                     transform=None, on_items: Callable[[int], None] | None = None, *,
                     num_workers: int = 1, prefetch: int = 1) -> pl.DataFrame:
    """:func:`score_shards` with a loaded ``(model, processor)``.

    ``transform(list[EncodedSample]) -> list[EncodedSample]``, applied to each chunk of encoded
    samples before scoring, is for controlled experiments (e.g. shuffling images across rows).
    ``on_items(n)`` after each chunk of n samples is scored. ``num_workers`` (0 or 1) encoding
    threads run up to ``num_workers + prefetch`` chunks ahead of the model.
    """
    if num_workers not in (0, 1):
        raise ValueError("num_workers must be 0 or 1: the tokenizer is not thread-safe")
    model.eval()
    pad_id = pad_token_id(processor)
    encode = partial(encode_chunk, processor, context_length(model))
    chunks = chunked(iter_shard_records(shard_paths), chunk_size)
    rows: list[dict] = []
    for chunk_rows, encoded, slots in prefetch_map(encode, chunks, workers=num_workers, ahead=prefetch,
                                                   name="perplexity-encode"):
        if transform is not None:
            encoded = transform(encoded)
        for slot, (total, n) in zip(slots, nll_of_samples(model, encoded, pad_id, batch_size, pack_len)):
            chunk_rows[slot]["assistant_tokens"] = n
            chunk_rows[slot]["nll"] = total / n
        rows.extend(chunk_rows)
        if on_items is not None:
            on_items(len(chunk_rows))
    return pl.DataFrame(rows, schema=SCORES_SCHEMA)


def score_shards(model_dir: str | Path, shard_paths: Iterable[str | Path], batch_size: int = 8,
                 pack_len: int = 1024, num_threads: int | None = None,
                 on_items: Callable[[int], None] | None = None, *, num_workers: int = 1) -> pl.DataFrame:
    """Score every sample of the (local) WebDataset shards with the reference model at ``model_dir``.

    Returns one row per sample in shard order: ``sample_id``, ``domain`` (from the record),
    ``has_image``, ``assistant_tokens``, ``nll`` (mean NLL per assistant token, nats) and
    ``reason`` (why ``nll`` is null; null when scored). ``batch_size`` packed rows of
    ``pack_len`` tokens run per forward pass.
    """
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        model, processor = load_model_and_processor(model_dir, "segments")
        return score_with_model(model, processor, shard_paths, batch_size=batch_size, pack_len=pack_len,
                                on_items=on_items, num_workers=num_workers)
    finally:
        torch.set_num_threads(previous)
