"""Batched embedding inference; image decoding overlapped with the forward pass.

`embed_images` decodes and preprocesses batches in worker threads (or forked processes) through
`mm_assets.prefetch.prefetch_map`: while the model runs batch k, the workers prepare the next
batches inside a bounded window, so they use the cycles the forward pass leaves idle and wait
when it is the slower side. PIL decoding and resizing and the numpy normalisation release the
GIL. The output is in input order and equal byte for byte to the inline path (``num_workers=0``)
at the same torch thread count, whatever the batch size and number of workers. SigLIP2's image
processor pads every image to `max_num_patches`, so a sample's vector does not depend on what
else is in its batch. (A model's float rounding may depend on torch's thread count, which is
why the thread count is a function of the cores, never of timings.)

Text-only rows go through the text tower (`embed_texts`), which projects into the same space
and dimension as the vision tower.

No Dagster import here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial

import numpy as np
import torch
from PIL import Image

from mm_assets.prefetch import prefetch_map
from mm_assets.storage import open_uri
from mm_assets.webdataset_io import read_shard

from .model import text_max_length
from .preprocess import FastSiglip2Preprocess, make_preprocess


def text_for_sample(question: str, answer: str) -> str:
    """The text a row is embedded by: first question and first answer (the samples table's
    `question` and `answer` columns)."""
    return f"{question.strip()}\n{answer.strip()}"


# ----------------------------------------------------------------------------- sources


def _open(shard) -> io.BufferedIOBase:
    if hasattr(shard, "read"):
        return contextlib.nullcontext(shard)
    return open_uri(os.fspath(shard))


def iter_raw_samples(st, raw_shards: dict) -> Iterator[tuple[str, str, dict, dict[str, bytes]]]:
    """``(domain, sample_id, json metadata, members)`` of every sample of the `raw_shards`
    pointers ({domain: pointer}), domains in sorted order."""
    for domain in sorted(raw_shards):
        raw = st.child(raw_shards[domain]["root"])
        tars = [s["tar"] for s in raw.read_json("manifest.json")["shards"]]
        for sid, meta, fields in iter_shard_samples(raw.open_each(tars)):
            yield domain, sid, meta, fields


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


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(num_workers: int) -> int:
    """Cores left for the forward pass once the decode workers have theirs (at least 1)."""
    return max(1, available_cores() - num_workers)


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


def _on_gpu(model) -> bool:
    return next(model.parameters()).device.type != "cpu"


def default_workers(model) -> int:
    """Decode workers. On a GPU the forward pass is cheap and decoding is the bottleneck: all but
    one core decode. On CPU the model keeps `default_model_threads` cores and the decode workers
    get the rest plus one: the bounded prefetch window parks them while the model is the slower
    side, and the extra one takes the cycles the forward pass leaves idle between batches when
    decoding is."""
    cores = available_cores()
    if _on_gpu(model):
        return max(1, min(8, cores - 1))
    return cores - default_model_threads(model) + 1


def default_model_threads(model) -> int:
    """Torch intra-op threads while decode workers run: on CPU half the cores (rounded up; a
    one- or two-core machine gives the model one thread, so its forward pass never waits on an
    intra-op thread that a decode worker has pushed off its core); on a GPU the cores the decode
    workers leave."""
    if _on_gpu(model):
        return default_threads(default_workers(model))
    cores = available_cores()
    return max(1, cores - cores // 2)


def _preprocess_to_numpy(preprocess, blobs: Sequence[bytes]) -> dict[str, np.ndarray]:
    # a forked worker's result goes back through a pipe: numpy arrays pickle as plain buffers
    return {k: v.numpy() for k, v in decode_and_preprocess(preprocess, blobs).items()}


def _batches(preprocess, chunks: Iterable[list[tuple[str, bytes]]], ids: list[str], *, num_workers: int,
             prefetch: int, processes: bool) -> Iterator[dict[str, torch.Tensor]]:
    """Preprocessed batches of the chunks in order; each chunk's ids appended to `ids` as it is read."""
    def blobs():
        for chunk in chunks:
            ids.extend(s for s, _ in chunk)
            yield [b for _, b in chunk]

    if processes:
        if not isinstance(preprocess, FastSiglip2Preprocess):
            raise ValueError("decode_processes needs the fast SigLIP2 preprocessing (a processor object "
                             "is not sent to worker processes)")
        for arrays in prefetch_map(partial(_preprocess_to_numpy, preprocess), blobs(), workers=num_workers,
                                   ahead=prefetch, processes=True):
            yield {k: torch.from_numpy(v) for k, v in arrays.items()}
        return
    yield from prefetch_map(partial(decode_and_preprocess, preprocess), blobs(), workers=num_workers,
                            ahead=prefetch, name="embed-decode")


def embed_images(model, image_processor, source, batch_size: int = 64, *, num_workers: int | None = None,
                 prefetch: int = 2, num_threads: int | None = None, fast_preprocess: bool = True,
                 decode_processes: bool = False,
                 on_items: Callable[[int], None] | None = None) -> tuple[list[str], np.ndarray]:
    """Embed images: ``(sample_ids, float32 [n, d] L2-normalised)`` in input order.

    `source`: one or more WebDataset shard paths/URIs/files (text-only samples are skipped),
    or an iterable of ``(sample_id, image bytes)``. Decoding and preprocessing run in
    `num_workers` threads (default: `default_workers`; forked processes with
    `decode_processes`) at most ``num_workers + prefetch`` batches ahead of the forward pass
    (0 workers: everything inline, no overlap). `num_threads`: torch intra-op threads during
    the call (default: `default_model_threads`, all cores without workers); the vectors are
    equal byte for byte for any `num_workers`, `prefetch` and `decode_processes` at the same
    `num_threads`. `fast_preprocess`: use the vectorised equivalent of a plain SigLIP2 image
    processor (`preprocess.py`); other processors are always called as they are.
    `on_items(n)` after each batch of n images is embedded.
    """
    preprocess = make_preprocess(image_processor, fast=fast_preprocess)
    if num_workers is None:
        num_workers = default_workers(model)
    if num_threads is None:
        num_threads = default_model_threads(model) if num_workers > 0 else default_threads(0)
    dim = int(getattr(getattr(model.config, "vision_config", model.config), "hidden_size"))
    ids: list[str] = []
    out: list[np.ndarray] = []
    batches = _batches(preprocess, chunked(_as_pairs(source), batch_size), ids, num_workers=num_workers,
                       prefetch=prefetch, processes=decode_processes)
    with torch_threads(num_threads), torch.inference_mode():
        for batch in batches:
            out.append(image_features(model, batch).cpu().numpy())
            if on_items is not None:
                on_items(len(out[-1]))
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
                 num_workers: int | None = None, num_threads: int | None = None, decode_processes: bool = False,
                 on_items: Callable[[int], None] | None = None) -> dict:
    """Every sample of one domain's shards, read once: image rows by the vision tower,
    text-only rows by the text tower. Returns ``{"sample_ids", "vectors", "modality"}`` in
    shard order (``modality[i]`` is ``"image"`` or ``"text"``); `on_items(n)` after each batch.
    `num_workers`, `num_threads`, `decode_processes`: see `embed_images`."""
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
                                     num_workers=num_workers, num_threads=num_threads,
                                     decode_processes=decode_processes, on_items=on_items)
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
