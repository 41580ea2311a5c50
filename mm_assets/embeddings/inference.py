"""Batched embedding inference; image decoding overlapped with the forward pass.

`embed_images` keeps a few batches in flight in a small thread pool: while the model runs
batch k, workers decode and preprocess batches k+1 .. k+prefetch (PIL decoding, resizing and
numpy normalisation release the GIL). The order of the output is the order of the input,
whatever the batch size and number of workers. SigLIP2's image processor pads every image
to `max_num_patches`, so a sample's vector does not depend on what else is in its batch.

Text-only rows go through the text tower (`embed_texts`), which projects into the same space
and dimension as the vision tower.

No Dagster import here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from mm_assets.storage import open_uri
from mm_assets.webdataset_io import read_shard

from .model import text_max_length
from .preprocess import make_preprocess


def text_for_sample(question: str, answer: str) -> str:
    """The text a row is embedded by: first question and first answer (the samples table's
    `question` and `answer` columns)."""
    return f"{question.strip()}\n{answer.strip()}"


# ----------------------------------------------------------------------------- sources


def _open(shard) -> io.BufferedIOBase:
    if hasattr(shard, "read"):
        return contextlib.nullcontext(shard)
    return open_uri(os.fspath(shard))


def iter_shard_samples(shards: Iterable) -> Iterator[tuple[str, dict, dict[str, bytes]]]:
    """``(sample_id, json metadata, members)`` for every sample of the WebDataset shards.

    A shard is a local path, an fsspec URI, or an open binary file.
    """
    for shard in shards:
        with _open(shard) as f:
            for key, fields in read_shard(f):
                meta = json.loads(fields["json"])
                yield meta.get("sample_id", key), meta, fields


def iter_shard_images(shards: Iterable) -> Iterator[tuple[str, bytes]]:
    """``(sample_id, image bytes)`` for every sample of the shards that has an image."""
    for sid, meta, fields in iter_shard_samples(shards):
        img = meta.get("image")
        if img:
            yield sid, fields[img["ext"]]


def iter_shard_texts(shards: Iterable, text_only: bool = True) -> Iterator[tuple[str, str]]:
    """``(sample_id, text)`` (see `text_for_sample`); by default only rows without an image."""
    for sid, meta, _ in iter_shard_samples(shards):
        if text_only and meta.get("image"):
            continue
        conv = meta["conversations"]
        question = conv[0]["value"].replace("<image>", "").strip()
        answer = conv[1]["value"] if len(conv) > 1 else ""
        yield sid, text_for_sample(question, answer)


def _as_pairs(source) -> Iterator[tuple[str, bytes]]:
    """Shard path(s)/URI(s)/file(s), or an iterable of ``(sample_id, image bytes)``."""
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
        return iter_shard_images([source])
    it = iter(source)
    try:
        first = next(it)
    except StopIteration:
        return iter(())

    def chain():
        yield first
        yield from it

    if isinstance(first, (str, os.PathLike)) or hasattr(first, "read"):
        return iter_shard_images(chain())
    return chain()


def chunked(it: Iterable, n: int) -> Iterator[list]:
    """Lists of `n` consecutive items (the last one shorter)."""
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


# ----------------------------------------------------------------------------- model calls


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def default_threads(num_workers: int) -> int:
    """Cores left for the forward pass once the decode workers have theirs (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - num_workers)


def decode_image(data: bytes) -> Image.Image:
    """RGB image from encoded bytes; transparency composited onto white (as transformers'
    `convert_to_rgb` does), so the fast and the processor paths see the same pixels."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if "A" in im.getbands() or im.info.get("transparency") is not None:
            rgba = im.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        return im.convert("RGB")


def decode_and_preprocess(preprocess, blobs: Sequence[bytes]) -> dict[str, torch.Tensor]:
    return preprocess([decode_image(b) for b in blobs])


def _pooled(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output


def _to_model(model, batch: dict) -> dict:
    p = next(model.parameters())
    return {k: (v.to(p.device, p.dtype) if k == "pixel_values" else v.to(p.device)) for k, v in batch.items()}


def image_features(model, batch: dict) -> torch.Tensor:
    """L2-normalised float32 image embeddings for one preprocessed batch (no grad handling)."""
    z = _pooled(model.get_image_features(**_to_model(model, batch)))
    return torch.nn.functional.normalize(z.float(), dim=-1)


def text_features(model, batch: dict) -> torch.Tensor:
    z = _pooled(model.get_text_features(**_to_model(model, batch)))
    return torch.nn.functional.normalize(z.float(), dim=-1)


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """SigLIP-style: pad to the full length; only the inputs the tokenizer declares."""
    enc = tokenizer(list(texts), padding="max_length", max_length=max_length, truncation=True,
                    return_tensors="pt")
    names = getattr(tokenizer, "model_input_names", None) or ["input_ids"]
    return {k: v for k, v in enc.items() if k in names}


# ----------------------------------------------------------------------------- public API


def default_workers(model) -> int:
    """Decode threads: on a GPU the forward pass is cheap and decoding is the bottleneck, so
    all but one core decode; on CPU the model and decoding share the cores half and half."""
    cores = default_threads(0)
    on_gpu = next(model.parameters()).device.type != "cpu"
    return max(1, min(8, cores - 1)) if on_gpu else max(1, cores // 2)


def embed_images(model, image_processor, source, batch_size: int = 64, *, num_workers: int | None = None,
                 prefetch: int = 2, num_threads: int | None = None, fast_preprocess: bool = True,
                 on_items: Callable[[int], None] | None = None) -> tuple[list[str], np.ndarray]:
    """Embed images: ``(sample_ids, float32 [n, d] L2-normalised)`` in input order.

    `source`: one or more WebDataset shard paths/URIs/files (text-only samples are skipped),
    or an iterable of ``(sample_id, image bytes)``. Decoding and preprocessing run in
    `num_workers` threads (default: `default_workers`) up to `prefetch` batches ahead of the
    forward pass (0 workers: everything inline, no overlap). `num_threads`: torch intra-op threads during the call
    (default: the cores not taken by the workers). `fast_preprocess`: use the vectorised
    equivalent of a plain SigLIP2 image processor (`preprocess.py`); other processors are
    always called as they are. `on_items(n)` after each batch of n images is embedded.
    """
    preprocess = make_preprocess(image_processor, fast=fast_preprocess)
    if num_workers is None:
        num_workers = default_workers(model)
    dim = int(getattr(getattr(model.config, "vision_config", model.config), "hidden_size"))
    ids: list[str] = []
    out: list[np.ndarray] = []
    chunks = chunked(_as_pairs(source), batch_size)
    if num_threads is None:
        num_threads = default_threads(num_workers)

    def run(batch):
        out.append(image_features(model, batch).cpu().numpy())
        if on_items is not None:
            on_items(len(out[-1]))

    with torch_threads(num_threads), torch.inference_mode():
        if num_workers <= 0:
            for chunk in chunks:
                ids.extend(s for s, _ in chunk)
                run(decode_and_preprocess(preprocess, [b for _, b in chunk]))
        else:
            with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="embed-decode") as pool:
                pending: deque = deque()
                for chunk in chunks:
                    ids.extend(s for s, _ in chunk)
                    pending.append(pool.submit(decode_and_preprocess, preprocess, [b for _, b in chunk]))
                    if len(pending) > max(1, prefetch):
                        run(pending.popleft().result())
                while pending:
                    run(pending.popleft().result())
    vecs = np.concatenate(out, axis=0).astype(np.float32, copy=False) if out else np.zeros((0, dim), np.float32)
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate sample_id in the image source")
    return ids, np.ascontiguousarray(vecs)


def embed_texts(model, tokenizer, texts: Iterable[str], batch_size: int = 128, *,
                num_threads: int | None = None, on_items: Callable[[int], None] | None = None) -> np.ndarray:
    """Embed texts with the text tower: float32 [n, d] L2-normalised, in input order."""
    texts = list(texts)
    cfg = getattr(model.config, "text_config", model.config)
    dim = int(getattr(cfg, "projection_size", None) or cfg.hidden_size)
    max_len = text_max_length(model)
    out = []
    with torch_threads(num_threads if num_threads is not None else default_threads(0)), torch.inference_mode():
        for chunk in chunked(texts, batch_size):
            out.append(text_features(model, tokenize(tokenizer, chunk, max_len)).cpu().numpy())
            if on_items is not None:
                on_items(len(chunk))
    vecs = np.concatenate(out, axis=0).astype(np.float32, copy=False) if out else np.zeros((0, dim), np.float32)
    return np.ascontiguousarray(vecs)


def embed_shards(model, tokenizer, image_processor, shards: Sequence, batch_size: int = 64, *,
                 num_workers: int | None = None, num_threads: int | None = None,
                 on_items: Callable[[int], None] | None = None) -> dict:
    """Every sample of one domain's shards, read once: image rows by the vision tower,
    text-only rows by the text tower. Returns ``{"sample_ids", "vectors", "modality"}`` in
    shard order (``modality[i]`` is ``"image"`` or ``"text"``); `on_items(n)` after each batch."""
    order: list[str] = []
    text_rows: list[tuple[str, str]] = []

    def images():
        for sid, meta, fields in iter_shard_samples(shards):
            order.append(sid)
            img = meta.get("image")
            if img:
                yield sid, fields[img["ext"]]
            else:
                conv = meta["conversations"]
                text_rows.append((sid, text_for_sample(conv[0]["value"].replace("<image>", ""),
                                                       conv[1]["value"] if len(conv) > 1 else "")))

    img_ids, img_vecs = embed_images(model, image_processor, images(), batch_size,
                                     num_workers=num_workers, num_threads=num_threads, on_items=on_items)
    txt_vecs = embed_texts(model, tokenizer, [t for _, t in text_rows], batch_size=max(batch_size, 64),
                           num_threads=num_threads, on_items=on_items)
    where = {sid: ("image", i) for i, sid in enumerate(img_ids)}
    where.update({sid: ("text", i) for i, (sid, _) in enumerate(text_rows)})
    dim = img_vecs.shape[1] if len(img_ids) else txt_vecs.shape[1]
    vectors = np.zeros((len(order), dim), np.float32)
    modality = []
    for r, sid in enumerate(order):
        kind, i = where[sid]
        vectors[r] = img_vecs[i] if kind == "image" else txt_vecs[i]
        modality.append(kind)
    return {"sample_ids": order, "vectors": vectors, "modality": modality}
