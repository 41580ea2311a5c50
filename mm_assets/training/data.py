"""Curated WebDataset shards -> model inputs for training (no Dagster import).

A curated shard (see :mod:`mm_assets.curated.writer`) holds per sample ``{key}.json`` — the
LLaVA-format record with ``sample_id`` and ``conversations`` (``[{"from": "human"|"gpt"|
"system", "value": ...}]``, the human turn of an image row containing ``<image>``) — and, for
image rows, ``{key}.jpg`` / ``.png`` / ….

:func:`encode_conversation` turns one conversation into

* ``input_ids``: the chat rendered with the checkpoint's chat template and tokenised by the
  checkpoint's processor, which expands each ``<image>`` into the image's feature tokens;
* ``labels``: ``-100`` everywhere except the tokens of each assistant answer and the EOS the
  template writes after it (every assistant turn of a multi-turn chat is a target). The
  assistant header (``ASSISTANT:``), user turns, system text, BOS and every image token are
  masked;
* ``pixel_values``: ``(n_images, C, H, W)``, or ``None`` for a text-only row.

How the assistant tokens are found: for assistant message ``i`` the rendered chat of
``messages[:i]`` with ``add_generation_prompt=True`` is a prefix of the full rendered chat and
ends where the answer starts, and the rendering of ``messages[:i + 1]`` ends where the answer's
EOS ends (the template is prefix-stable; this is checked, and a template that is not raises).
Those character spans are moved into the image-expanded text with the processor's
``text_replacement_offsets`` and a token is a target iff its offset starts inside a span.
This uses only the template's text, so it works for any LLaVA-format checkpoint whose template
is prefix-stable, not only for templates with ``{% generation %}`` markers (whose marked
region would also cover the ``ASSISTANT:`` header).

BOS: the text is tokenised with ``add_special_tokens=False`` (the template writes BOS); if
the template did not write one, one is prepended; a sample that still ends up with a BOS count
other than one (a literal ``<s>`` in the data) is skipped with reason ``bos_count``. So every
encoded sample has exactly one BOS, at position 0, whichever tokenizer convention the
checkpoint follows.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

IGNORE_INDEX = -100
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tiff")
ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
           "system": "system"}


class SkipSample(ValueError):
    """A sample that cannot be trained on; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class StoredPixels:
    """Pixel values held as the 8-bit levels they came from and the per-channel affine map the
    processor applied (rescale, normalise): ``x = level * scale + offset``. A quarter of float32's
    memory — the whole encoded dataset is held in memory, 40 000 images of 128 px are 7.9 GB as
    float32 — and the same values to float rounding."""
    levels: torch.Tensor             # (n_images, C, H, W) uint8
    scale: torch.Tensor              # (C,) float32
    offset: torch.Tensor             # (C,) float32

    def floats(self) -> torch.Tensor:
        s, o = self.scale.numpy()[:, None, None], self.offset.numpy()[:, None, None]
        return torch.from_numpy((self.levels.numpy() * s + o).astype(np.float32))

    def same_map(self, other: StoredPixels) -> bool:
        return torch.equal(self.scale, other.scale) and torch.equal(self.offset, other.offset)


def store_pixels(pixel_values: torch.Tensor, image_processor) -> torch.Tensor | StoredPixels:
    """`pixel_values` as :class:`StoredPixels` when they are exactly 8-bit levels under the image
    processor's rescale and normalisation (SigLIP's, CLIP's …), else unchanged."""
    ip = image_processor
    if ip is None or not getattr(ip, "do_rescale", False):
        return pixel_values
    channels = pixel_values.shape[1]
    mean = torch.tensor(ip.image_mean if getattr(ip, "do_normalize", False) else [0.0] * channels,
                        dtype=torch.float32)
    std = torch.tensor(ip.image_std if getattr(ip, "do_normalize", False) else [1.0] * channels,
                       dtype=torch.float32)
    if mean.numel() != channels or std.numel() != channels:
        return pixel_values
    scale, offset = float(ip.rescale_factor) / std, -mean / std
    # numpy: on one image's worth of values torch's reductions cost milliseconds of overhead each
    x, s, o = pixel_values.numpy(), scale.numpy()[:, None, None], offset.numpy()[:, None, None]
    levels = np.rint((x - o) / s)
    if levels.min() < 0 or levels.max() > 255 or np.abs(levels * s + o - x).max() > 1e-5:
        return pixel_values
    return StoredPixels(torch.from_numpy(levels.astype(np.uint8)), scale, offset)


@dataclass
class EncodedSample:
    sample_id: str
    input_ids: torch.Tensor          # (T,) int64
    labels: torch.Tensor             # (T,) int64, IGNORE_INDEX where no loss
    pixels: torch.Tensor | StoredPixels | None = None   # see `pixel_values`
    meta: dict = field(default_factory=dict)

    @property
    def pixel_values(self) -> torch.Tensor | None:
        """(n_images, C, H, W) float32, or None for a text-only sample."""
        return self.pixels.floats() if isinstance(self.pixels, StoredPixels) else self.pixels

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    @property
    def n_images(self) -> int:
        if self.pixels is None:
            return 0
        return int((self.pixels.levels if isinstance(self.pixels, StoredPixels) else self.pixels).shape[0])


# ----------------------------------------------------------------------------- reading shards


def iter_shard_records(shard_paths: Iterable[str | Path]) -> Iterator[tuple[str, dict | None, list[bytes]]]:
    """``(key, record, [image bytes])`` for every sample of the given local shard files, in order
    (``record`` is None for a sample without a ``.json`` member)."""
    from mm_assets.webdataset_io import read_shard

    for path in shard_paths:
        with open(path, "rb") as f:
            for key, fields in read_shard(f):
                record = json.loads(fields["json"]) if "json" in fields else None
                images = [fields[ext] for ext in IMAGE_EXTS if ext in fields]
                yield key, record, images


def conversation_to_messages(conversations: list[dict]) -> list[dict]:
    """LLaVA ``[{"from", "value"}]`` -> chat-template ``[{"role", "content"}]`` (content a string)."""
    messages = []
    for turn in conversations:
        role = ROLE_OF.get(str(turn.get("from", "")).lower())
        if role is None:
            raise SkipSample("unknown_role", repr(turn.get("from")))
        value = turn.get("value")
        if not isinstance(value, str):
            raise SkipSample("bad_value", f"turn value of type {type(value).__name__}")
        messages.append({"role": role, "content": value})
    if not any(m["role"] == "assistant" for m in messages):
        raise SkipSample("no_assistant_turn")
    return messages


# ----------------------------------------------------------------------------- encoding


def _render(tokenizer, template, messages, add_generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer, messages: list[dict], template: str | None = None) -> tuple[str, list[tuple[int, int]]]:
    """(rendered chat, ``[(start, end)]`` character spans of each assistant answer + its EOS)."""
    full = _render(tokenizer, template, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head = _render(tokenizer, template, messages[:i], add_generation_prompt=True)
        upto = _render(tokenizer, template, messages[:i + 1])
        if not (full.startswith(head) and full.startswith(upto) and len(head) <= len(upto)):
            raise ValueError("the chat template is not prefix-stable: cannot locate assistant turns "
                             f"(turn {i}: {head[-40:]!r} / {upto[-40:]!r})")
        spans.append((len(head), len(upto)))
    return full, spans


def _to_expanded(pos: int, replacements: list[dict]) -> int:
    """A character offset of the rendered text moved into the placeholder-expanded text."""
    shift = 0
    for r in replacements:
        s, e = r["span"]
        ns, ne = r["new_span"]
        if e <= pos:
            shift += (ne - ns) - (e - s)
        elif s < pos:          # inside a placeholder: cannot be a span boundary here
            raise ValueError("an assistant span boundary falls inside a multimodal placeholder")
    return pos + shift


def decode_images(images: list[bytes]):
    from PIL import Image

    out = []
    for data in images:
        im = Image.open(io.BytesIO(data))
        im.load()
        out.append(im.convert("RGB"))
    return out


def encode_conversation(processor, conversations: list[dict], images: list | None = None,
                        sample_id: str = "", max_len: int | None = None) -> EncodedSample:
    """One LLaVA-format conversation (+ PIL images, in ``<image>`` order) -> :class:`EncodedSample`.

    Raises :class:`SkipSample` for a sample that cannot be trained on (no assistant turn,
    ``<image>`` count different from the image count, longer than ``max_len``, BOS count ≠ 1,
    no target token).
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    template = getattr(processor, "chat_template", None) or tokenizer.chat_template
    image_token = getattr(processor, "image_token", None) or "<image>"
    images = list(images or [])
    messages = conversation_to_messages(conversations)
    n_placeholders = sum(m["content"].count(image_token) for m in messages)
    if n_placeholders != len(images):
        raise SkipSample("image_token_mismatch", f"{n_placeholders} {image_token} for {len(images)} images")
    text, spans = assistant_char_spans(tokenizer, messages, template)

    kwargs = dict(text=[text], add_special_tokens=False, return_offsets_mapping=True)
    if images:
        enc = processor(images=images, return_text_replacement_offsets=True, **kwargs)
        replacements = enc["text_replacement_offsets"][0]
    else:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        enc = {"input_ids": [enc["input_ids"]], "offset_mapping": [enc["offset_mapping"]]}
        replacements = []
    ids = list(enc["input_ids"][0])
    offsets = list(enc["offset_mapping"][0])
    xspans = [(_to_expanded(s, replacements), _to_expanded(e, replacements)) for s, e in spans]

    image_id = tokenizer.convert_tokens_to_ids(image_token)
    labels = []
    for tid, (s, _e) in zip(ids, offsets):
        target = tid != image_id and any(a <= s < b for a, b in xspans)
        labels.append(tid if target else IGNORE_INDEX)

    bos = tokenizer.bos_token_id
    if bos is not None:
        if not ids or ids[0] != bos:
            ids, labels = [bos] + ids, [IGNORE_INDEX] + labels
        n_bos = sum(1 for t in ids if t == bos)
        if n_bos != 1:
            raise SkipSample("bos_count", f"{n_bos} BOS tokens (a literal BOS string in the data?)")
    if max_len is not None and len(ids) > max_len:
        raise SkipSample("too_long", f"{len(ids)} tokens > max_len {max_len}")
    if all(x == IGNORE_INDEX for x in labels):
        raise SkipSample("no_target_tokens")

    pixels = None
    if images:
        pixels = store_pixels(torch.from_numpy(np.stack([np.asarray(p) for p in enc["pixel_values"]])).float(),
                              getattr(processor, "image_processor", None))
    return EncodedSample(sample_id=sample_id, input_ids=torch.tensor(ids, dtype=torch.long),
                         labels=torch.tensor(labels, dtype=torch.long), pixels=pixels)


def encode_record(processor, key: str, record: dict, images: list[bytes],
                  max_len: int | None = None) -> EncodedSample:
    """A curated record (+ its image bytes) -> :class:`EncodedSample`; ``sample_id`` is the shard key
    (unique per curated version: up-sampled copies carry ``_r1``, ``_r2``…)."""
    if not isinstance(record, dict):
        raise SkipSample("no_json")
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise SkipSample("no_conversations")
    try:
        pil = decode_images(images)
    except Exception as exc:   # noqa: BLE001 - a corrupt image is a skip reason, not a crash
        raise SkipSample("bad_image", str(exc)) from exc
    sample = encode_conversation(processor, conversations, pil, sample_id=key, max_len=max_len)
    sample.meta = record_meta(key, record)
    return sample


def record_meta(key: str, record: dict) -> dict:
    """What an encoded sample keeps of its record: the record's own sample id (the shard key when
    it has none) and its domain."""
    return {"sample_id": record.get("sample_id", key), "domain": record.get("domain")}


def load_dataset(shard_paths: Iterable[str | Path], processor, max_len: int | None = None,
                 memo=None, processor_key: str | None = None) -> tuple[list[EncodedSample], Counter]:
    """Every trainable sample of the shards (in shard order) and a Counter of skip reasons.

    The whole encoded dataset is held in memory, images as 8-bit levels (`StoredPixels`); a
    production-scale variant would stream shards with a shuffle buffer instead. ``memo`` (an
    :class:`~mm_assets.training.encoding_memo.EncodingMemo`, with ``processor_key`` naming the
    processor) serves samples another call of this process already encoded.
    """
    from .encoding_memo import sample_key

    samples: list[EncodedSample] = []
    skipped: Counter = Counter()
    for key, record, images in iter_shard_records(shard_paths):
        try:
            if memo is None or not isinstance(record, dict):
                samples.append(encode_record(processor, key, record, images, max_len=max_len))
            else:
                samples.append(memo.encode(sample_key(processor_key, max_len, record, images), key, record,
                                           lambda: encode_record(processor, key, record, images, max_len=max_len)))
        except SkipSample as exc:
            skipped[exc.reason] += 1
    return samples, skipped
