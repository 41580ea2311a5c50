"""Write a curated WebDataset version: the kept samples of the raw shards, copies included.

The members of each sample are copied byte for byte from the raw shard (the LLaVA-format
`.json` record with its `sample_id`, and the image). Up-sampled copies get the keys
`<sample_id>_r1`, `_r2`, … so every key stays unique. A rephrased sample's `.json` member is
replaced by its rewritten record (every copy); the image stays byte for byte. A generated sample
(`mmgen`) follows its source: its own `.json` record with the source's image members. Shards are
deterministic tars, each re-read and validated before the manifest (the completion marker) is written.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

from mm_assets.storage import Storage
from mm_assets.webdataset_io import read_shard, shard_digest, validate_shard, write_shard


def _kept(raw: Storage, raw_manifest: dict, copies: dict[str, int], rewrites: dict[str, bytes],
          additions: dict[str, list[tuple[str, bytes]]]) -> Iterator[tuple[str, dict[str, bytes]]]:
    for shard in raw_manifest["shards"]:
        with raw.open_read(shard["tar"]) as f:
            for key, fields in read_shard(f):
                added = additions.get(key, ())
                if key in rewrites and copies.get(key, 0):
                    fields = {**fields, "json": rewrites[key]}
                for j in range(copies.get(key, 0)):
                    yield (key if j == 0 else f"{key}_r{j}"), fields
                for gen_id, record in added:
                    yield gen_id, {**fields, "json": record}


def write_curated_shards(raw: Storage, raw_manifest: dict, copies: dict[str, int], out: Storage,
                         samples_per_shard: int, rewrites: dict[str, bytes] | None = None,
                         additions: dict[str, list[tuple[str, bytes]]] | None = None) -> list[dict]:
    shards, batch = [], []

    def flush():
        buf = io.BytesIO()
        write_shard(buf, batch)
        data = buf.getvalue()
        validate_shard(io.BytesIO(data), shard_digest(batch))
        name = f"shard-{len(shards):06d}.tar"
        out.write_bytes(name, data)
        shards.append({"tar": name, "sha256": hashlib.sha256(data).hexdigest(), "samples": len(batch),
                       "bytes": len(data)})
        batch.clear()

    for item in _kept(raw, raw_manifest, copies, rewrites or {}, additions or {}):
        batch.append(item)
        if len(batch) == samples_per_shard:
            flush()
    if batch:
        flush()
    return shards
