"""Persistent rephrase cache in a `Storage` (local directory or ``s3://``), no Dagster import.

Key: ``sha256(text)`` within a namespace for one ``(model_id, prompt_version)``. Layout::

    <root>/<prompt_version>-<sha256(model_id, prompt_version)[:16]>/
        namespace.json                              model_id and prompt_version, for people
        chunk-<time_ns:020d>-<sha256[:16]>.parquet  key, text, output (one per completed batch)

The cache is append-only: each completed batch is one chunk written atomically (`Storage`
writes to a temporary name, then renames / completes the upload), so a process killed midway
loses at most the batch in flight, and a reader never sees half a chunk. Loading merges every
chunk; when two chunks hold the same key (two runs of a non-deterministic back end), the
earlier chunk in name order wins, so every reader sees the same value. `compact` merges all
chunks into one (written first, then the merged ones deleted: a kill in between leaves
duplicates that hold the same values).

Outputs are stored raw — cleaning and validation happen after the cache.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable

import polars as pl

from mm_assets.storage import Storage, parquet_bytes, sha256_bytes

CHUNK_SCHEMA = {"key": pl.String, "text": pl.String, "output": pl.String}
_CHUNK = re.compile(r"^chunk-(\d{20})-([0-9a-f]{16})\.parquet$")


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def namespace_for(model_id: str, prompt_version: str) -> str:
    digest = hashlib.sha256(f"{model_id}\0{prompt_version}".encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", prompt_version)[:48]
    return f"{slug}-{digest}"


class RephraseCache:
    def __init__(self, storage: Storage, model_id: str, prompt_version: str):
        self.model_id, self.prompt_version = str(model_id), str(prompt_version)
        self.namespace = namespace_for(self.model_id, self.prompt_version)
        self.storage = storage
        self._described = False

    def chunks(self) -> list[str]:
        """Chunk file names, oldest first."""
        return [n for n in self.storage.list(self.namespace, suffix=".parquet") if _CHUNK.match(n)]

    def _read(self, name: str) -> pl.DataFrame:
        return self.storage.read_parquet(f"{self.namespace}/{name}")

    def load(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """``{key: raw output}`` for the wanted `keys` (all keys when None)."""
        wanted = None if keys is None else set(keys)
        found: dict[str, str] = {}
        for name in self.chunks():
            df = self._read(name)
            if wanted is not None:
                df = df.filter(pl.col("key").is_in(list(wanted)))
            for key, output in df.select("key", "output").iter_rows():
                found.setdefault(key, output)
        return found

    def append(self, texts: list[str], outputs: list[str]) -> str | None:
        """Write one chunk (atomically); returns its name (None for an empty batch)."""
        if len(texts) != len(outputs):
            raise ValueError(f"{len(texts)} texts but {len(outputs)} outputs")
        if not texts:
            return None
        if not all(isinstance(o, str) for o in outputs):
            raise TypeError("every rephrase output must be a str")
        self._describe()
        df = pl.DataFrame({"key": [text_key(t) for t in texts], "text": texts, "output": outputs},
                          schema=CHUNK_SCHEMA)
        return self._write(df, time.time_ns())

    def _write(self, df: pl.DataFrame, stamp: int) -> str:
        data = parquet_bytes(df)
        name = f"chunk-{stamp:020d}-{sha256_bytes(data)[:16]}.parquet"
        self.storage.write_bytes(f"{self.namespace}/{name}", data)
        return name

    def _describe(self) -> None:
        if self._described:
            return
        rel = f"{self.namespace}/namespace.json"
        if not self.storage.exists(rel):
            self.storage.write_json(rel, {"model_id": self.model_id, "prompt_version": self.prompt_version,
                                          "key": "sha256(text)"})
        self._described = True

    def compact(self) -> int:
        """Merge every chunk into one; returns the number of chunks merged (0 or 1: nothing done)."""
        names = self.chunks()
        if len(names) < 2:
            return 0
        frames = [self._read(n) for n in names]
        merged = pl.concat(frames, how="vertical").unique(subset="key", keep="first", maintain_order=True)
        first_stamp = int(_CHUNK.match(names[0]).group(1))
        kept = self._write(merged, first_stamp)
        for n in names:
            if n != kept:
                self.storage.delete(f"{self.namespace}/{n}")
        return len(names)

    def __len__(self) -> int:
        return len(self.load())
