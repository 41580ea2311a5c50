"""One storage layer for every artifact: a local directory or an `s3://` prefix.

Plain Python (no Dagster): the Dagster resource in `resources/storage.py` only builds one of
these. Every write is atomic — a reader sees either the previous state or the complete
new object, never a partial one:
- local: write to a hidden temporary file in the same directory, then `os.replace`;
- remote (S3 and other object stores): spool to a local temporary file, then upload it with
  one `put_file`, which an object store makes visible only when the upload completes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec
import polars as pl
from fsspec.core import url_to_fs
from fsspec.utils import get_protocol

from mm_assets.scratch import owner_tag, scratch_dir, spool_file, sweep

TMP_PREFIX = ".tmp-"
# Botocore retries transient S3 errors (500/502/503/504, throttling, dropped connections) with
# exponential backoff and jitter; "standard" mode, 10 attempts (the default is 5, legacy mode)
# rides out a minute-long burst of SlowDown from a busy bucket. A caller's own setting wins.
S3_RETRIES = {"max_attempts": 10, "mode": "standard"}


class OutOfSpace(OSError):
    """A write failed because its file system is full (or over quota); names the artifact."""


# (pid, directory) -> the directory's mtime when this process last swept it or wrote to it: a
# sweep lists the directory, so it runs again only when someone else changed it since.
_swept: dict[tuple[int, str], int | None] = {}


def _mtime(directory: str) -> int | None:
    try:
        return os.stat(directory).st_mtime_ns
    except FileNotFoundError:
        return None


def _sweep_if_changed(directory: str) -> None:
    """Remove what killed writers left in `directory`, unless nothing changed there since."""
    key, mtime = (os.getpid(), directory), _mtime(directory)
    if mtime is not None and _swept.get(key) != mtime:
        sweep(directory, TMP_PREFIX)
        _swept[key] = _mtime(directory)


def _note_own_write(directory: str) -> None:
    key = (os.getpid(), directory)
    if key in _swept:
        _swept[key] = _mtime(directory)


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys and no insignificant whitespace: equal content, equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parquet_bytes(df: pl.DataFrame) -> bytes:
    """The Parquet encoding used for every table artifact (deterministic for equal frames)."""
    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd", statistics=True)
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Storage:
    """Artifact storage rooted at `root` (a local path or a URI such as `s3://bucket/prefix`).

    Paths passed to the methods are relative to the root and use `/` separators.
    """

    def __init__(self, root: str, storage_options: dict | None = None):
        self.root = root.rstrip("/") if "://" in root else os.path.abspath(root)
        self.storage_options = dict(storage_options or {})
        fs_options = dict(self.storage_options)
        if get_protocol(self.root) not in ("file", "local"):
            # Other processes (run workers, sensors, other runs) write to the same prefix: a
            # cached directory listing would make list/walk_files/exists/size stale. Caller's
            # explicit setting wins.
            fs_options.setdefault("use_listings_cache", False)
            if get_protocol(self.root) in ("s3", "s3a"):
                config = dict(fs_options.get("config_kwargs") or {})
                config.setdefault("retries", dict(S3_RETRIES))
                fs_options["config_kwargs"] = config
        self.fs, self._root_path = url_to_fs(self.root, **fs_options)
        # Nothing is created until something is written: a Storage over an input that does not
        # exist (a typo in a path) must fail to read, not appear as an empty directory.
        self.is_local = self.fs.protocol in ("file", "local") or "file" in (self.fs.protocol or ())

    # -- naming -----------------------------------------------------------------------------
    def _full(self, rel: str) -> str:
        rel = rel.strip("/")
        if not rel:
            return self._root_path
        if ".." in rel.split("/"):
            raise ValueError(f"storage path must stay under the root: {rel!r}")
        return f"{self._root_path.rstrip('/')}/{rel}"

    def uri(self, rel: str) -> str:
        """The full URI of a relative path (what lineage and metadata record)."""
        full = self._full(rel)
        if self.is_local:
            return full
        return f"{self.fs.protocol[0] if isinstance(self.fs.protocol, tuple) else self.fs.protocol}://{full}"

    def child(self, rel: str) -> Storage:
        """A Storage rooted at a sub-directory, sharing the same options."""
        return Storage(self.uri(rel), self.storage_options)

    # -- reading ----------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        full = self._full(rel)
        if self.is_local:
            # an asset that finds its output complete writes nothing there: sweep on the check
            # too, or a killed writer's temporaries next to a reused artifact would stay for ever
            _sweep_if_changed(os.path.dirname(full))
        return self.fs.exists(full)

    def info(self, rel: str) -> dict:
        """fsspec file info (size, modification time or ETag)."""
        return self.fs.info(self._full(rel))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self._full(rel)))

    def open_read(self, rel: str, block_size: int | None = None) -> IO[bytes]:
        """A seekable binary reader; remote files fetch byte ranges on demand."""
        kwargs = {} if self.is_local or block_size is None else {"block_size": block_size}
        return self.fs.open(self._full(rel), "rb", **kwargs)

    def open_each(self, rels) -> Iterator[IO[bytes]]:
        """Each artifact opened in turn, the previous one closed when the next is asked for: for
        readers that take open files (shard iterators), so that they never open a bare URI
        without this storage's options (endpoint, credentials)."""
        for rel in rels:
            with self.open_read(rel) as f:
                yield f

    def read_bytes(self, rel: str) -> bytes:
        with self.open_read(rel) as f:
            return f.read()

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def read_parquet(self, rel: str) -> pl.DataFrame:
        with self.open_read(rel) as f:
            return pl.read_parquet(io.BytesIO(f.read()))

    def list(self, rel: str = "", suffix: str = "") -> list[str]:
        """Names (not paths) directly under `rel`, sorted, temporaries hidden."""
        full = self._full(rel)
        if not self.fs.exists(full):
            return []
        names = []
        for p in self.fs.ls(full, detail=False):
            name = p.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(TMP_PREFIX) or not name.endswith(suffix):
                continue
            names.append(name)
        return sorted(names)

    def walk_files(self, rel: str = "") -> list[str]:
        """Every file under `rel`, as paths relative to `rel`, sorted, temporaries hidden."""
        full = self._full(rel).rstrip("/")
        if not self.fs.exists(full):
            return []
        out = []
        for p in self.fs.find(full):
            relp = p[len(full):].lstrip("/")
            if any(part.startswith(TMP_PREFIX) for part in relp.split("/")):
                continue
            out.append(relp)
        return sorted(out)

    # -- writing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def open_write(self, rel: str) -> Iterator[IO[bytes]]:
        """Write a file atomically. If the body raises, nothing becomes visible. A full disk is
        an `OutOfSpace` naming the artifact (the temporary is removed, the old file kept)."""
        try:
            with self._open_write(rel) as f:
                yield f
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and not isinstance(exc, OutOfSpace):
                where = os.path.dirname(self._full(rel)) if self.is_local else tempfile.gettempdir()
                free = shutil.disk_usage(where).free if os.path.isdir(where) else None
                raise OutOfSpace(exc.errno, f"no space left writing {self.uri(rel)} ({os.strerror(exc.errno)}"
                                            f"{f'; {free:,} bytes free in {where}' if free is not None else ''}); "
                                            f"nothing was written there") from exc
            raise

    @contextlib.contextmanager
    def _open_write(self, rel: str) -> Iterator[IO[bytes]]:
        full = self._full(rel)
        if self.is_local:
            directory = os.path.dirname(full)
            os.makedirs(directory, exist_ok=True)
            _sweep_if_changed(directory)
            tmp = os.path.join(directory, f"{TMP_PREFIX}{owner_tag()}-{uuid.uuid4().hex[:8]}-{os.path.basename(full)}")
            try:
                with open(tmp, "wb") as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, full)
                _note_own_write(directory)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            with spool_file("mm-spool-") as f:
                tmp = f.name
                try:
                    yield f
                except BaseException:
                    f.close()
                    os.remove(tmp)
                    raise
            try:
                self.fs.put_file(tmp, full)
            finally:
                os.remove(tmp)

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Atomically write `data`; returns its sha256."""
        with self.open_write(rel) as f:
            f.write(data)
        return sha256_bytes(data)

    def write_json(self, rel: str, obj: Any) -> str:
        """Atomically write canonical JSON; returns the sha256 of the bytes written."""
        return self.write_bytes(rel, canonical_json(obj))

    def write_parquet(self, rel: str, df: pl.DataFrame) -> str:
        """Atomically write a Parquet file; returns the sha256 of the bytes written."""
        return self.write_bytes(rel, parquet_bytes(df))

    def put_local_file(self, local_path: str, rel: str) -> None:
        """Atomically copy a finished local file into storage."""
        with open(local_path, "rb") as src, self.open_write(rel) as dst:
            shutil.copyfileobj(src, dst, length=8 << 20)

    def delete(self, rel: str) -> None:
        full = self._full(rel)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)


def file_storage(uri: str, storage_options: dict | None = None) -> tuple[Storage, str]:
    """(Storage of the file's directory, file name) for a single input file path or URI."""
    directory, _, name = uri.rstrip("/").rpartition("/")
    return Storage(directory or ".", storage_options), name


def open_uri(uri: str, storage_options: dict | None = None) -> IO[bytes]:
    """Open any local path or fsspec URI for binary reading (used for source inputs)."""
    return fsspec.open(uri, "rb", **(storage_options or {})).open()


@contextlib.contextmanager
def local_path(st: Storage, rel: str) -> Iterator[str]:
    """A local file path for an artifact (a temporary download when storage is remote)."""
    if st.is_local:
        yield st.uri(rel)
        return
    with scratch_dir("mm-dl-") as tmp:
        path = os.path.join(tmp, os.path.basename(rel))
        with st.open_read(rel) as src, open(path, "wb") as dst:
            while chunk := src.read(8 << 20):
                dst.write(chunk)
        yield path


@contextlib.contextmanager
def local_dir(st: Storage, rel: str) -> Iterator[str]:
    """A local directory holding every file under `rel` (downloaded when storage is remote)."""
    if st.is_local:
        yield st.uri(rel)
        return
    with scratch_dir("mm-dl-") as tmp:
        for name in st.walk_files(rel):
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(st.read_bytes(f"{rel}/{name}"))
        yield tmp
