"""Encoded samples remembered by content, shared by the training runs of one process.

The recipes of a study train on mostly the same samples: a filter keeps a subset of the pool,
a rewrite changes a few conversations, MM-GEN adds some. Encoding a sample (PNG decode, resize,
chat template, tokenising, label spans) costs about 3 ms on 2 cores — 44 000 samples are two
minutes per recipe at the study's scale, eleven recipes per worker pool — while the result
depends only on the conversation, the image bytes, the processor and ``max_len``. So a worker
that trains several recipes in turn (the demo's and the study's worker processes) encodes each
distinct sample once; the curated shard key (``sample_id``, which differs per curated version)
and the record's metadata are taken from each record, not from the memo.

Bounded (least recently used out first; ``MM_ENCODE_MEMO_GB``, default 4, 0 turns it off); a
skipped sample is remembered with its reason, so the skip counts stay those of a fresh encoding.
A run worker started per run (``dagster dev``) starts empty and gains nothing, loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from .data import EncodedSample, SkipSample, StoredPixels, record_meta

# files of a checkpoint that do not shape how a sample is encoded
_NOT_PROCESSOR = (".safetensors", ".bin", ".pt", ".pth")
_NOT_PROCESSOR_NAMES = {"manifest.json", "trainer_state.json", "COMPLETE"}


def processor_fingerprint(checkpoint: str | Path) -> str:
    """A hash of every file of a local checkpoint directory except its weights and the trainer's
    bookkeeping: tokenizer, chat template, image processor and model config."""
    h = hashlib.sha256()
    root = Path(checkpoint)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix in _NOT_PROCESSOR or path.name in _NOT_PROCESSOR_NAMES:
            continue
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def sample_key(processor_key: str, max_len: int | None, record: dict, images: list[bytes]) -> str:
    """What an encoding depends on: the processor, ``max_len``, the conversation, the images."""
    h = hashlib.sha256(f"{processor_key}\0{max_len}\0".encode())
    h.update(json.dumps(record.get("conversations"), sort_keys=True, ensure_ascii=False).encode())
    for data in images:
        h.update(b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _nbytes(sample: EncodedSample) -> int:
    n = sample.input_ids.nbytes + sample.labels.nbytes
    if isinstance(sample.pixels, StoredPixels):
        n += sample.pixels.levels.nbytes
    elif sample.pixels is not None:
        n += sample.pixels.nbytes
    return n + 200


class EncodingMemo:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[EncodedSample | SkipSample, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def encode(self, key: str, sample_id: str, record: dict, encode) -> EncodedSample:
        """The encoding remembered under ``key`` (re-keyed to ``sample_id`` and this record's
        metadata), or ``encode()``'s, remembered. Raises the remembered :class:`SkipSample`."""
        if self.max_bytes <= 0:
            return encode()
        found = self._items.get(key)
        if found is None:
            self.misses += 1
            try:
                value = encode()
            except SkipSample as exc:
                self._put(key, exc, 200)
                raise
            self._put(key, value, _nbytes(value))
            return value
        self.hits += 1
        self._items.move_to_end(key)
        value = found[0]
        if isinstance(value, SkipSample):
            raise SkipSample(value.reason, value.detail)
        return replace(value, sample_id=sample_id, meta=record_meta(sample_id, record))

    def _put(self, key: str, value, nbytes: int) -> None:
        self._items[key] = (value, nbytes)
        self._bytes += nbytes
        while self._bytes > self.max_bytes and self._items:
            _, (_, n) = self._items.popitem(last=False)
            self._bytes -= n

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


PROCESS_MEMO = EncodingMemo(int(float(os.environ.get("MM_ENCODE_MEMO_GB", "4")) * 2**30))
