"""Embeddings one raw shard at a time: the unit of work that `map_shards` runs in process or on Ray.

A task carries only what a Ray worker on another machine can use: the storage root and its
options, the raw shard's path under it, the embedder's asset value. The worker reads the shard
and the embedder from storage, writes the shard's vectors and ids atomically, then the shard's
completion record (`<shard>.part.json`); a task that finds the record reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from mm_assets.embeddings import store
from mm_assets.shard_map import ShardResult, resumable, task_device
from mm_assets.storage import Storage, local_dir, local_path


def shard_uris(st: Storage, raw_pointer: dict) -> tuple[Storage, list[str]]:
    """(the raw_shards root, its shard tar names in manifest order) of one domain's `raw_shards` value."""
    raw = st.child(raw_pointer["root"])
    return raw, [s["tar"] for s in raw.read_json("manifest.json")["shards"]]


def load_embedder_from_pointer(st: Storage, pointer: dict):
    """(model, tokenizer, image_processor) for an `embedder` asset value."""
    from mm_assets.embeddings.model import load_embedder

    if pointer.get("root") is None:
        return load_embedder(pointer["model"])
    with local_dir(st, pointer["root"]) as path:
        return load_embedder(path)


_loaded: dict[str, tuple] = {}


def _cached_embedder(st: Storage, pointer: dict):
    """The embedder, loaded once per process (a Ray worker runs many shard tasks)."""
    key = f"{st.root}|{pointer['version']}"
    if key not in _loaded:
        _loaded.clear()                 # one model at a time
        model, tokenizer, processor = load_embedder_from_pointer(st, pointer)
        _loaded[key] = (model.to(task_device()), tokenizer, processor)
    return _loaded[key]


def npy_bytes(a: np.ndarray) -> bytes:
    return store.npy_bytes(np.ascontiguousarray(a, dtype=np.float32))


@dataclass(frozen=True)
class EmbedShardTask:
    storage_root: str
    storage_options: dict
    raw_root: str            # the domain's raw_shards root, relative to the storage root
    tar: str                 # the shard's tar name in the raw manifest
    out_root: str            # the embeddings version's root, relative to the storage root
    embedder: dict           # the `embedder` asset value
    batch_size: int = 64
    decode_workers: int = 1
    torch_threads: int | None = None     # None: the cores the decode workers leave (in process)

    @property
    def shard(self) -> str:
        return self.tar.removesuffix(".tar")


def part_record_name(shard: str) -> str:
    return f"{shard}.part.json"


def embed_shard(task: EmbedShardTask, on_items=None) -> ShardResult:
    """Embed one raw shard into `out_root` (or reuse its complete output)."""
    from mm_assets.embeddings.inference import embed_shards

    st = Storage(task.storage_root, task.storage_options)
    out = st.child(task.out_root)

    def compute() -> dict:
        model, tokenizer, processor = _cached_embedder(st, task.embedder)
        with local_path(st.child(task.raw_root), task.tar) as path:
            result = embed_shards(model, tokenizer, processor, [path], batch_size=task.batch_size,
                                  num_workers=task.decode_workers, num_threads=task.torch_threads,
                                  on_items=on_items)
        ids = pl.DataFrame({"sample_id": result["sample_ids"], "modality": result["modality"]})
        record = {"npy": f"{task.shard}.npy", "ids": f"{task.shard}.ids.parquet", "rows": len(result["sample_ids"]),
                  "dim": int(result["vectors"].shape[1]),
                  "npy_sha256": out.write_bytes(f"{task.shard}.npy", npy_bytes(result["vectors"])),
                  "ids_sha256": out.write_parquet(f"{task.shard}.ids.parquet", ids)}
        return record

    return resumable(out, part_record_name(task.shard), task.shard, compute)


@dataclass(frozen=True)
class QuestionChunkTask:
    """Rows [start, stop) of a domain's samples table: one shard of its question embeddings."""
    storage_root: str
    storage_options: dict
    samples: str             # the samples table (parquet), relative to the storage root
    start: int
    stop: int
    index: int               # the shard number in the question embeddings' manifest
    out_root: str
    embedder: dict
    batch_size: int = 64
    torch_threads: int | None = None

    @property
    def shard(self) -> str:
        return f"questions-{self.index:05d}"


def question_chunks(rows: int, rows_per_shard: int = store.ROWS_PER_SHARD) -> list[tuple[int, int]]:
    """The row ranges of the shards `write_embeddings` would write (at least one, maybe empty)."""
    return [(lo, min(rows, lo + rows_per_shard)) for lo in range(0, max(rows, 1), rows_per_shard)]


def embed_question_chunk(task: QuestionChunkTask) -> ShardResult:
    """Embed one row range's questions into shard `index` (or reuse its complete output)."""
    from mm_assets.relevance import embed_questions

    st = Storage(task.storage_root, task.storage_options)
    out = st.child(task.out_root)

    def compute() -> dict:
        model, tokenizer, _ = _cached_embedder(st, task.embedder)
        with st.open_read(task.samples) as f:
            rows = pl.read_parquet(f, columns=["sample_id", "question"]).slice(task.start, task.stop - task.start)
        ids, vectors = embed_questions(model, tokenizer, rows, batch_size=task.batch_size,
                                       num_threads=task.torch_threads)
        return store.write_embedding_shard(out, task.index, ids, vectors, prefix="questions")

    return resumable(out, part_record_name(task.shard), task.shard, compute)
