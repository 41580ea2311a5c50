"""WebDataset shard writer/reader rules: sanitised keys, adjacency, validation, determinism."""

import io
import tarfile

import pytest

from mm_assets.webdataset_io import ShardError, read_shard, sanitise_key, shard_digest, validate_shard, write_shard


def shard_bytes(samples):
    buf = io.BytesIO()
    write_shard(buf, samples)
    return buf.getvalue()


def test_round_trip_and_determinism():
    samples = [("k1", {"json": b'{"a":1}', "jpg": b"\xff\xd8x"}), ("k2", {"json": b"{}"})]
    a, b = shard_bytes(samples), shard_bytes(samples)
    assert a == b
    assert list(read_shard(io.BytesIO(a))) == samples
    validate_shard(io.BytesIO(a), shard_digest(samples))


def test_validation_catches_differences():
    a = shard_bytes([("k1", {"json": b"1"})])
    with pytest.raises(ShardError):
        validate_shard(io.BytesIO(a), shard_digest([("k1", {"json": b"2"})]))
    with pytest.raises(ShardError):
        validate_shard(io.BytesIO(a), shard_digest([("k1", {"json": b"1"}), ("k2", {"json": b"1"})]))


def test_unsafe_or_repeated_keys_are_refused():
    with pytest.raises(ShardError):
        shard_bytes([("a.b", {"json": b"1"})])
    with pytest.raises(ShardError):
        shard_bytes([("k", {"json": b"1"}), ("k", {"json": b"2"})])


def test_non_adjacent_members_are_an_error_when_reading():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in ["a.json", "b.json", "a.jpg"]:
            ti = tarfile.TarInfo(name)
            ti.size = 1
            t.addfile(ti, io.BytesIO(b"x"))
    with pytest.raises(ShardError, match="not adjacent"):
        list(read_shard(io.BytesIO(buf.getvalue())))


def test_sanitise_key():
    assert sanitise_key("abc_123-x") == "abc_123-x"
    long = "x" * 200
    assert len(sanitise_key(long)) <= 64
    assert sanitise_key("a/b.c d") != sanitise_key("a/b.c e")
    assert "." not in sanitise_key("a/b.c d") and "/" not in sanitise_key("a/b.c d")
