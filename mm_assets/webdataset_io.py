"""WebDataset shards: deterministic writing, strict reading, validation after every write.

A WebDataset shard is a plain tar in which each sample is a group of adjacent members
`{key}.{ext}`. Known failure modes of real writers that this module rules out: keys silently
truncated when long (webdataset #428), members of one key that are not adjacent and get read
as several partial samples (#140/#407), a last shard left truncated when a writer is not
closed (#32). Shards written here are byte-reproducible (fixed mtimes, owners, order), so
a resumed run produces exactly the bytes of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterable, Iterator
from typing import IO

MAX_KEY_LENGTH = 64
_KEY_OK = re.compile(r"^[A-Za-z0-9_-]+$")


class ShardError(ValueError):
    pass


def sanitise_key(raw: str) -> str:
    """A short key made only of [A-Za-z0-9_-]; long or unsafe keys become a hash."""
    if _KEY_OK.match(raw) and len(raw) <= MAX_KEY_LENGTH:
        return raw
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", raw)[:40].strip("_")
    return f"{cleaned}_{hashlib.sha256(raw.encode()).hexdigest()[:16]}" if cleaned else \
        hashlib.sha256(raw.encode()).hexdigest()[:16]


def _member(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_shard(f: IO[bytes], samples: Iterable[tuple[str, dict[str, bytes]]]) -> int:
    """Write samples `(key, {ext: bytes})` as one tar to `f`; returns the number of samples."""
    n = 0
    seen: set[str] = set()
    with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, fields in samples:
            if key != sanitise_key(key):
                raise ShardError(f"key {key!r} is not a sanitised WebDataset key")
            if key in seen:
                raise ShardError(f"key {key!r} appears twice in one shard")
            seen.add(key)
            if not fields:
                raise ShardError(f"sample {key!r} has no fields")
            for ext in sorted(fields):
                data = fields[ext]
                tar.addfile(_member(f"{key}.{ext}", len(data)), io.BytesIO(data))
            n += 1
    return n


def split_member_name(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is everything before the first '.' of the basename."""
    base = name.rsplit("/", 1)[-1]
    prefix = name[: len(name) - len(base)]
    if "." not in base:
        raise ShardError(f"member {name!r} has no extension")
    stem, ext = base.split(".", 1)
    return prefix + stem, ext


def read_shard(f: IO[bytes]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Read `(key, {ext: bytes})` groups; raises ShardError if a key's members are not adjacent."""
    done: set[str] = set()
    key: str | None = None
    fields: dict[str, bytes] = {}
    with tarfile.open(fileobj=f, mode="r|") as tar:
        for m in tar:
            if not m.isfile():
                continue
            k, ext = split_member_name(m.name)
            if k != key:
                if key is not None:
                    done.add(key)
                    yield key, fields
                if k in done:
                    raise ShardError(f"members of key {k!r} are not adjacent")
                key, fields = k, {}
            if ext in fields:
                raise ShardError(f"key {k!r} has two {ext!r} members")
            fields[ext] = tar.extractfile(m).read()
    if key is not None:
        yield key, fields


def shard_digest(samples: Iterable[tuple[str, dict[str, bytes]]]) -> list[tuple[str, dict[str, str]]]:
    """(key, {ext: sha256}) for each sample: what validation compares."""
    return [(k, {e: hashlib.sha256(v).hexdigest() for e, v in fs.items()}) for k, fs in samples]


def validate_shard(f: IO[bytes], expected: list[tuple[str, dict[str, str]]]) -> None:
    """Re-read a written shard and check keys, order, fields and content hashes."""
    got = shard_digest(read_shard(f))
    if len(got) != len(expected):
        raise ShardError(f"shard holds {len(got)} samples, expected {len(expected)}")
    for (gk, gf), (ek, ef) in zip(got, expected):
        if gk != ek:
            raise ShardError(f"sample order differs: read {gk!r}, expected {ek!r}")
        if gf != ef:
            raise ShardError(f"sample {gk!r}: fields or content differ ({sorted(gf)} vs {sorted(ef)})")
