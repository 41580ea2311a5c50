"""Embeddings on storage: `.npy` shards aligned with a sample-id sidecar, plus a manifest.

Layout under one `Storage` directory (``prefix`` defaults to ``embeddings``)::

    embeddings-00000.npy           float32 [rows, d], np.save(allow_pickle=False)
    embeddings-00000.ids.parquet   one column `sample_id`, the rows' ids in row order
    ...
    embeddings.json                manifest: dim, dtype, rows, normalised, shards with their
                                   row counts and sha256, any extra metadata

Every file is written atomically (`Storage.write_bytes`) and the manifest last, so a
reader that finds the manifest finds complete shards. `read_embeddings` checks the
manifest against every shard (hashes, row counts, dtype, dimension, duplicate ids) and,
if given, against the expected id list.

No Dagster import here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import polars as pl

from mm_assets.storage import Storage, sha256_bytes

FORMAT = "mm-curation/embeddings@1"


class EmbeddingsMismatch(ValueError):
    """Stored embeddings disagree with their manifest or with the expected sample ids."""


def _storage(where) -> Storage:
    return where if isinstance(where, Storage) else Storage(str(where))


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


ROWS_PER_SHARD = 65536


def _checked(sample_ids: Sequence[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    ids = [str(s) for s in sample_ids]
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D, got shape {x.shape}")
    if len(ids) != x.shape[0]:
        raise ValueError(f"{len(ids)} sample ids for {x.shape[0]} vectors")
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids must be unique")
    if not np.isfinite(x).all():
        raise ValueError("vectors contain NaN or inf")
    return ids, x


def write_embedding_shard(where, k: int, sample_ids: Sequence[str], vectors: np.ndarray, *,
                          prefix: str = "embeddings") -> dict:
    """Write shard `k` (its `.npy` and id sidecar); returns its manifest entry, with `dim` and
    whether its rows are unit-norm (what `write_embeddings_manifest` needs)."""
    st = _storage(where)
    ids, x = _checked(sample_ids, vectors)
    npy_name, ids_name = f"{prefix}-{k:05d}.npy", f"{prefix}-{k:05d}.ids.parquet"
    npy_sha = st.write_bytes(npy_name, npy_bytes(x))
    ids_sha = st.write_parquet(ids_name, pl.DataFrame({"sample_id": ids}, schema={"sample_id": pl.String}))
    norms = np.linalg.norm(x, axis=1) if len(x) else np.ones(0)
    return {"npy": npy_name, "ids": ids_name, "rows": len(ids), "npy_sha256": npy_sha, "ids_sha256": ids_sha,
            "dim": int(x.shape[1]), "normalised": bool(len(x) == 0 or np.allclose(norms, 1.0, atol=1e-4))}


def write_embeddings_manifest(where, shards: Sequence[dict], *, prefix: str = "embeddings",
                              metadata: dict | None = None) -> dict:
    """The manifest over shards written by `write_embedding_shard`, written last."""
    dims = {sh["dim"] for sh in shards}
    if len(dims) != 1:
        raise ValueError(f"shards of different dimensions: {sorted(dims)}")
    manifest = {
        "format": FORMAT, "rows": sum(sh["rows"] for sh in shards), "dim": dims.pop(), "dtype": "float32",
        "normalised": all(sh["normalised"] for sh in shards),
        "shards": [{k: sh[k] for k in ("npy", "ids", "rows", "npy_sha256", "ids_sha256")} for sh in shards],
        "metadata": metadata or {},
    }
    _storage(where).write_json(f"{prefix}.json", manifest)
    return manifest


def write_embeddings(where, sample_ids: Sequence[str], vectors: np.ndarray, *, prefix: str = "embeddings",
                     rows_per_shard: int = ROWS_PER_SHARD, metadata: dict | None = None) -> dict:
    """Write `vectors` (row i belongs to `sample_ids[i]`) as `.npy` shards with id sidecars;
    returns the manifest (also written as ``{prefix}.json``)."""
    ids, x = _checked(sample_ids, vectors)
    n_shards = max(1, -(-len(ids) // rows_per_shard))
    shards = [write_embedding_shard(where, k, ids[k * rows_per_shard:(k + 1) * rows_per_shard],
                                    x[k * rows_per_shard:(k + 1) * rows_per_shard], prefix=prefix)
              for k in range(n_shards)]
    return write_embeddings_manifest(where, shards, prefix=prefix, metadata=metadata)


def read_embeddings(where, *, prefix: str = "embeddings", expected_ids: Sequence[str] | None = None,
                    verify_hashes: bool = True) -> tuple[list[str], np.ndarray]:
    """``(sample_ids, float32 [n, d])`` as written by `write_embeddings`, checked for
    alignment; raises `EmbeddingsMismatch` on any disagreement."""
    st = _storage(where)
    manifest = st.read_json(f"{prefix}.json")
    if manifest.get("format") != FORMAT:
        raise EmbeddingsMismatch(f"unknown embeddings format {manifest.get('format')!r}")
    dim = int(manifest["dim"])
    ids: list[str] = []
    parts = []
    for sh in manifest["shards"]:
        raw = st.read_bytes(sh["npy"])
        ids_raw = st.read_bytes(sh["ids"])
        if verify_hashes and (sha256_bytes(raw) != sh["npy_sha256"] or sha256_bytes(ids_raw) != sh["ids_sha256"]):
            raise EmbeddingsMismatch(f"{sh['npy']}: content does not match the manifest hash")
        a = np.load(io.BytesIO(raw), allow_pickle=False)
        shard_ids = pl.read_parquet(io.BytesIO(ids_raw))["sample_id"].to_list()
        if a.dtype != np.float32 or a.ndim != 2 or a.shape[1] != dim:
            raise EmbeddingsMismatch(f"{sh['npy']}: dtype/shape {a.dtype} {a.shape}, manifest says float32 [*, {dim}]")
        if not (a.shape[0] == len(shard_ids) == sh["rows"]):
            raise EmbeddingsMismatch(f"{sh['npy']}: {a.shape[0]} rows, {len(shard_ids)} ids, manifest {sh['rows']}")
        ids.extend(shard_ids)
        parts.append(a)
    x = np.concatenate(parts, axis=0) if parts else np.zeros((0, dim), np.float32)
    if len(ids) != manifest["rows"]:
        raise EmbeddingsMismatch(f"{len(ids)} rows read, manifest lists {manifest['rows']}")
    if len(set(ids)) != len(ids):
        raise EmbeddingsMismatch("duplicate sample ids")
    if expected_ids is not None and list(expected_ids) != ids:
        exp = list(expected_ids)
        first = next((i for i, (a, b) in enumerate(zip(exp, ids)) if a != b), min(len(exp), len(ids)))
        raise EmbeddingsMismatch(f"sample ids differ from the expected list (first at row {first}; "
                                 f"{len(ids)} stored, {len(exp)} expected)")
    return ids, x
