"""Reproducible, atomic file writers: JSON arrays, gzip'd directory-tree tarballs, parquet."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: str | Path, obj, indent: int | None = 1) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")


class JsonArrayWriter:
    """Streams a JSON array, one element per line (the real file is too big to build in memory).

    Use as a context manager: the file appears under its name only if the block succeeds.
    """

    def __init__(self, path: str | Path):
        self._cm = atomic_path(path)
        self._fh = None
        self._first = True

    def __enter__(self) -> "JsonArrayWriter":
        self._fh = open(self._cm.__enter__(), "wb")
        self._fh.write(b"[\n")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._fh.write(b"\n]\n")
        self._fh.close()
        self._cm.__exit__(exc_type, exc, tb)

    def add_raw(self, element: bytes) -> None:
        if not self._first:
            self._fh.write(b",\n")
        self._fh.write(element)
        self._first = False

    def add(self, element) -> None:
        self.add_raw(dumps(element).encode("utf-8"))


def _info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def tar_gz_bytes(members: list[tuple[str, bytes]], level: int = 6) -> bytes:
    """A gzip'd tar of a directory tree: members sorted by path, each directory entry first."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        seen: set[str] = set()
        for name, data in sorted(members):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                d = "/".join(parts[:depth]) + "/"
                if d not in seen:
                    seen.add(d)
                    tar.addfile(_info(d, directory=True))
            tar.addfile(_info(name, len(data)), io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=level, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_tar_gz(path: str | Path, members: list[tuple[str, bytes]], level: int = 6) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(tar_gz_bytes(members, level))


def write_parquet(table: pa.Table, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
