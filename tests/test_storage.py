"""`Storage` behaves the same on a local directory and on an S3-compatible object store.

Every test runs twice: against a temporary local directory (`local`) and against a real moto
S3 server on loopback (`s3`, marked `pytest.mark.s3`), with a fresh bucket per test. What a
test checks about the stored objects it checks through a `Raw` view that bypasses `Storage`
(the file system for `local`, a separate boto3 client for `s3`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mm_assets.storage import TMP_PREFIX, Storage, canonical_json
from resources.storage import StorageResource

try:
    from tests.servers import MotoS3Server, moto_s3_server
except ImportError:  # tests/ on sys.path instead of the repository root
    from servers import MotoS3Server, moto_s3_server


# -- fixtures ----------------------------------------------------------------------------------
class Raw:
    """Direct access to what is stored under a Storage root, bypassing `Storage`."""

    def __init__(self, local_root: Path | None = None, server: MotoS3Server | None = None,
                 bucket: str = "", prefix: str = ""):
        self.local_root = local_root
        self.bucket = bucket
        self.prefix = prefix
        self.s3 = server.client() if server else None

    def keys(self) -> list[str]:
        """Every stored object/file under the root (temporaries included), relative, sorted."""
        if self.local_root is not None:
            out = []
            for dirpath, _dirs, files in os.walk(self.local_root):
                for f in files:
                    out.append(os.path.relpath(os.path.join(dirpath, f), self.local_root).replace(os.sep, "/"))
            return sorted(out)
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            out += [o["Key"][len(self.prefix) + 1:] for o in page.get("Contents", [])]
        return sorted(out)

    def get(self, rel: str) -> bytes:
        if self.local_root is not None:
            return (self.local_root / rel).read_bytes()
        return self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}")["Body"].read()

    def put(self, rel: str, data: bytes) -> None:
        """Write as another process would (no atomicity, no cache shared with `Storage`)."""
        if self.local_root is not None:
            p = self.local_root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        else:
            self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}", Body=data)

    def delete(self, rel: str) -> None:
        if self.local_root is not None:
            (self.local_root / rel).unlink()
        else:
            self.s3.delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}")


@pytest.fixture(scope="module")
def moto_server():
    with moto_s3_server() as server:
        yield server


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request, tmp_path):
    """(Storage, Raw) for a fresh, empty root."""
    if request.param == "local":
        root = tmp_path / "store"
        yield Storage(str(root)), Raw(local_root=root)
        return
    server: MotoS3Server = request.getfixturevalue("moto_server")
    bucket = server.create_bucket(f"test-{uuid.uuid4().hex[:12]}")
    prefix = "artifacts/run"
    storage = Storage(f"s3://{bucket}/{prefix}", server.storage_options(bucket))
    yield storage, Raw(server=server, bucket=bucket, prefix=prefix)


@pytest.fixture
def storage(backend) -> Storage:
    return backend[0]


@pytest.fixture
def raw(backend) -> Raw:
    return backend[1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- bytes, json, parquet ----------------------------------------------------------------------
def test_write_read_bytes(storage, raw):
    data = bytes(range(256)) * 10
    digest = storage.write_bytes("a/b/c.bin", data)
    assert digest == sha(data)
    assert storage.read_bytes("a/b/c.bin") == data
    assert raw.get("a/b/c.bin") == data

    assert storage.write_bytes("empty.bin", b"") == sha(b"")
    assert storage.read_bytes("empty.bin") == b""

    # overwrite replaces the whole object
    storage.write_bytes("a/b/c.bin", b"short")
    assert storage.read_bytes("a/b/c.bin") == b"short"
    assert raw.keys() == ["a/b/c.bin", "empty.bin"]


def test_open_each_opens_one_artifact_at_a_time_with_the_storages_options(storage):
    """For readers that take open files (shard iterators): each artifact opened through the
    storage itself (its endpoint and credentials, which a bare s3:// URI would not have), the
    previous one closed when the next is asked for."""
    storage.write_bytes("shards/0.tar", b"first")
    storage.write_bytes("shards/1.tar", b"second")
    opened = []
    for f in storage.open_each(["shards/0.tar", "shards/1.tar"]):
        opened.append(f)
        assert [g.closed for g in opened] == [True] * (len(opened) - 1) + [False]
        assert f.read() == (b"first", b"second")[len(opened) - 1]
    assert len(opened) == 2 and opened[-1].closed


def test_json_is_canonical_and_hash_matches_stored_bytes(storage, raw):
    obj = {"b": 1, "a": [3, 1, 2], "nested": {"z": None, "y": 1.5}, "text": "héllo ✓"}
    digest = storage.write_json("meta/x.json", obj)
    stored = raw.get("meta/x.json")
    assert digest == sha(stored)
    assert stored == canonical_json(obj)
    assert stored == '{"a":[3,1,2],"b":1,"nested":{"y":1.5,"z":null},"text":"héllo ✓"}'.encode()
    assert storage.read_json("meta/x.json") == obj

    # same content in another key order: same bytes, same hash
    reordered = json.loads(json.dumps(obj, sort_keys=False))
    reordered = dict(reversed(list(reordered.items())))
    assert storage.write_json("meta/y.json", reordered) == digest
    assert raw.get("meta/y.json") == stored


def test_parquet_round_trip(storage, raw):
    df = pl.DataFrame(
        {
            "id": pl.Series([1, 2, 3], dtype=pl.Int64),
            "uri": ["s3://b/0.tar", "s3://b/1.tar", None],
            "score": [0.5, None, 1.25],
            "tags": [["a"], [], ["b", "c"]],
            "ok": [True, False, True],
        }
    )
    digest = storage.write_parquet("tables/part-0.parquet", df)
    assert digest == sha(raw.get("tables/part-0.parquet"))
    back = storage.read_parquet("tables/part-0.parquet")
    assert_frame_equal(back, df)
    assert pl.read_parquet(raw.get("tables/part-0.parquet")).equals(df)


# -- listing -----------------------------------------------------------------------------------
def test_list_and_walk_files_sorted_and_hide_temporaries(storage, raw):
    for rel in ["d/b.json", "d/a.json", "d/c.txt", "d/sub/x.json", "d/sub/deep/y.bin", "top.json"]:
        storage.write_bytes(rel, rel.encode())
    # leftovers of a crashed writer (another process) must never be listed
    raw.put(f"d/{TMP_PREFIX}a.json-0123abcd", b"partial")
    raw.put(f"d/sub/{TMP_PREFIX}x.json-deadbeef", b"partial")
    raw.put(f"d/{TMP_PREFIX}dir/inner.bin", b"partial")

    assert storage.list("d") == ["a.json", "b.json", "c.txt", "sub"]
    assert storage.list("d", suffix=".json") == ["a.json", "b.json"]
    assert storage.list("d/sub") == ["deep", "x.json"]
    assert storage.list("") == ["d", "top.json"]
    assert storage.list() == ["d", "top.json"]
    assert storage.list("missing") == []

    assert storage.walk_files("d") == ["a.json", "b.json", "c.txt", "sub/deep/y.bin", "sub/x.json"]
    assert storage.walk_files("d/sub") == ["deep/y.bin", "x.json"]
    assert storage.walk_files() == [
        "d/a.json", "d/b.json", "d/c.txt", "d/sub/deep/y.bin", "d/sub/x.json", "top.json",
    ]
    assert storage.walk_files("missing") == []
    # the raw view does see the temporaries: hiding them is Storage's job
    assert sum(TMP_PREFIX in k for k in raw.keys()) == 3


def test_listing_sees_other_writers(storage, raw):
    """Objects written or deleted by another process show up at once (no stale listing)."""
    storage.write_bytes("shards/000.tar", b"0")
    assert storage.list("shards") == ["000.tar"]
    assert storage.walk_files() == ["shards/000.tar"]
    assert not storage.exists("shards/001.tar")

    raw.put("shards/001.tar", b"11")
    assert storage.list("shards") == ["000.tar", "001.tar"]
    assert storage.walk_files() == ["shards/000.tar", "shards/001.tar"]
    assert storage.exists("shards/001.tar")
    assert storage.size("shards/001.tar") == 2

    raw.put("shards/001.tar", b"1111")
    assert storage.size("shards/001.tar") == 4
    assert storage.read_bytes("shards/001.tar") == b"1111"

    raw.delete("shards/000.tar")
    assert not storage.exists("shards/000.tar")
    assert storage.list("shards") == ["001.tar"]


# -- exists / size / delete --------------------------------------------------------------------
def test_exists_size_delete(storage, raw):
    assert not storage.exists("x/y.bin")
    with pytest.raises(FileNotFoundError):
        storage.size("x/y.bin")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("x/y.bin")

    storage.write_bytes("x/y.bin", b"12345")
    assert storage.exists("x/y.bin")
    assert storage.exists("x")  # a "directory" with something in it
    assert storage.size("x/y.bin") == 5

    storage.delete("x/y.bin")
    assert not storage.exists("x/y.bin")
    assert raw.keys() == []
    storage.delete("x/y.bin")  # deleting what is not there is a no-op

    # deleting a directory removes everything under it, and nothing else
    for rel in ["dir/a", "dir/b/c", "dir/b/d/e", "keep/f"]:
        storage.write_bytes(rel, b"z")
    storage.delete("dir")
    assert not storage.exists("dir/a")
    assert storage.walk_files("dir") == []
    assert storage.walk_files() == ["keep/f"]
    assert raw.keys() == ["keep/f"]


def test_open_read_is_seekable(storage):
    data = bytes(range(256)) * 4096  # 1 MiB
    storage.write_bytes("big.bin", data)
    with storage.open_read("big.bin", block_size=64 * 1024) as f:
        assert f.seekable()
        f.seek(500_000)
        assert f.read(100) == data[500_000:500_100]
        assert f.tell() == 500_100
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:]
        f.seek(3)
        assert f.read(5) == data[3:8]
        f.seek(10, os.SEEK_CUR)
        assert f.read(4) == data[18:22]


# -- atomicity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_open_write_exception_leaves_nothing(storage, raw, tmp_path, monkeypatch, exc):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where remote writes spool locally

    storage.write_bytes("out/keep.bin", b"version-1")

    # a new object that fails mid-write: nothing appears
    with pytest.raises(exc):
        with storage.open_write("out/new.bin") as f:
            f.write(b"partial " * 1000)
            raise exc("boom")
    assert not storage.exists("out/new.bin")

    # an existing object that fails mid-rewrite: the previous version is intact
    with pytest.raises(exc):
        with storage.open_write("out/keep.bin") as f:
            f.write(b"version-2 partial")
            raise exc("boom")
    assert storage.read_bytes("out/keep.bin") == b"version-1"

    assert raw.keys() == ["out/keep.bin"]  # no object, no temporary, remote or local
    assert storage.list("out") == ["keep.bin"]
    assert list(spool.iterdir()) == []


def test_open_write_is_invisible_until_it_completes(storage, raw):
    storage.write_bytes("v.bin", b"old")
    with storage.open_write("v.bin") as f:
        f.write(b"new content")
        # readers still see the complete previous version
        assert storage.read_bytes("v.bin") == b"old"
        assert storage.list() == ["v.bin"]
        assert storage.walk_files() == ["v.bin"]
        with storage.open_write("w.bin") as g:
            g.write(b"w")
            assert not storage.exists("w.bin")
    assert storage.read_bytes("v.bin") == b"new content"
    assert storage.read_bytes("w.bin") == b"w"
    assert raw.keys() == ["v.bin", "w.bin"]


def test_put_local_file(storage, raw, tmp_path):
    src = tmp_path / "local.bin"
    src.write_bytes(b"x" * 100_000)
    storage.put_local_file(str(src), "copied/local.bin")
    assert raw.get("copied/local.bin") == src.read_bytes()


# -- child storages and paths ------------------------------------------------------------------
def test_child_storage(storage, raw):
    child = storage.child("runs/r1")
    assert child.storage_options == storage.storage_options
    assert child.is_local == storage.is_local
    assert child.root == storage.uri("runs/r1")
    assert child.uri("m.json") == storage.uri("runs/r1/m.json")

    child.write_json("m.json", {"k": 1})
    assert storage.read_json("runs/r1/m.json") == {"k": 1}
    grandchild = child.child("parts")
    grandchild.write_bytes("p0.bin", b"p0")
    assert storage.read_bytes("runs/r1/parts/p0.bin") == b"p0"
    assert child.list() == ["m.json", "parts"]
    assert child.walk_files() == ["m.json", "parts/p0.bin"]
    assert raw.keys() == ["runs/r1/m.json", "runs/r1/parts/p0.bin"]

    # a child's root must be reachable again from its recorded URI
    again = Storage(child.root, child.storage_options)
    assert again.read_json("m.json") == {"k": 1}


def test_uri_shape(storage):
    u = storage.uri("a/b.json")
    if storage.is_local:
        assert os.path.isabs(u) and u.endswith("/a/b.json")
    else:
        assert u.startswith("s3://") and u.endswith("/artifacts/run/a/b.json")
    assert storage.uri("") == storage.root
    assert storage.uri("/a/b.json/") == u


@pytest.mark.parametrize("bad", ["..", "../x", "a/../../x", "a/..", "/../escape.bin", "a/b/../../../c"])
def test_path_escape_rejected(storage, raw, bad):
    for op in (
        lambda: storage.write_bytes(bad, b"x"),
        lambda: storage.read_bytes(bad),
        lambda: storage.exists(bad),
        lambda: storage.list(bad),
        lambda: storage.walk_files(bad),
        lambda: storage.delete(bad),
        lambda: storage.uri(bad),
        lambda: storage.child(bad),
    ):
        with pytest.raises(ValueError):
            op()
    with pytest.raises(ValueError):
        with storage.open_write(bad) as f:
            f.write(b"x")
    assert raw.keys() == []


# -- the Dagster resource ----------------------------------------------------------------------
def test_storage_resource_get(storage, raw):
    res = StorageResource(root=storage.root, storage_options=storage.storage_options)
    got = res.get()
    assert isinstance(got, Storage)
    assert got.root == storage.root and got.is_local == storage.is_local
    got.write_json("from_resource.json", {"ok": True})
    assert storage.read_json("from_resource.json") == {"ok": True}

    # and through Dagster itself: config validation and resource injection into an asset
    @dg.asset
    def probe(storage: StorageResource) -> dg.MaterializeResult:
        s = storage.get()
        digest = s.write_json("probe/out.json", {"asset": "probe"})
        return dg.MaterializeResult(metadata={"uri": s.uri("probe/out.json"), "sha256": digest})

    result = dg.materialize([probe], resources={"storage": res})
    assert result.success
    (mat,) = result.asset_materializations_for_node("probe")
    assert mat.metadata["uri"].value == storage.uri("probe/out.json")
    assert mat.metadata["sha256"].value == sha(raw.get("probe/out.json"))


KILLED_WRITER = """
import os, signal, sys
from mm_assets.scratch import scratch_dir
from mm_assets.storage import Storage
st = Storage(sys.argv[1])
st.write_bytes("shards/a.bin", b"done")
with scratch_dir("mm-source-") as tmp, st.open_write("shards/b.bin") as f:
    open(os.path.join(tmp, "part.parquet"), "wb").write(b"x" * 1000)
    f.write(b"half a shard")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_what_a_killed_writer_leaves_is_swept_by_the_next_and_a_live_ones_is_not(tmp_path, monkeypatch):
    """SIGKILL skips every `finally`: the half-written `.tmp-*` file and the scratch directory
    stay. The next writer in the same directory (and the next scratch directory of the same kind)
    removes them; a temporary of a live process is left alone."""
    import subprocess
    import sys

    from mm_assets.scratch import scratch_dir

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    root = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(root)], env={**os.environ, "TMPDIR": str(scratch)},
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -9
    leftovers = [p.name for p in (root / "shards").iterdir() if p.name.startswith(TMP_PREFIX)]
    assert len(leftovers) == 1 and (root / "shards" / leftovers[0]).read_bytes() == b"half a shard"
    assert [p.name[:len("mm-source-")] for p in scratch.iterdir()] == ["mm-source-"]
    st = Storage(str(root))
    assert st.list("shards") == ["a.bin"]                # never visible to a reader

    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with scratch_dir("mm-source-") as live:
        assert os.listdir(scratch) == [os.path.basename(live)]   # the dead one's directory is gone
        with st.open_write("shards/c.bin") as f:                 # first write there this process
            f.write(b"c")
            inside = [p.name for p in (root / "shards").iterdir() if p.name.startswith(TMP_PREFIX)]
            assert len(inside) == 1 and inside != leftovers         # ours (live) stays, theirs went
    assert sorted(p.name for p in (root / "shards").iterdir()) == ["a.bin", "c.bin"]

    # killed again after this process swept there: an existence check (what a reused artifact
    # gets instead of a write) sweeps the directory again, since it changed
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(root)], env={**os.environ, "TMPDIR": str(scratch)},
                   cwd=Path(__file__).resolve().parents[1])
    assert any(p.name.startswith(TMP_PREFIX) for p in (root / "shards").iterdir())
    assert st.exists("shards/a.bin")
    assert sorted(p.name for p in (root / "shards").iterdir()) == ["a.bin", "c.bin"]


def test_a_full_disk_is_a_clear_error_naming_the_artifact_and_leaves_nothing_corrupt(tmp_path):
    """A 1 MiB tmpfs as the store: a 2 MiB write fails with `OutOfSpace` naming the artifact;
    the previous version of the file is intact and no temporary is left."""
    from conftest import small_tmpfs
    from mm_assets.storage import OutOfSpace

    with small_tmpfs(tmp_path / "small", "1m") as mnt:
        st = Storage(str(mnt / "store"))
        st.write_bytes("shards/a.bin", b"previous version")
        with pytest.raises(OutOfSpace, match=r"no space left writing .*/store/shards/a\.bin") as info:
            st.write_bytes("shards/a.bin", os.urandom(2 << 20))
        assert "bytes free in" in str(info.value)
        assert st.read_bytes("shards/a.bin") == b"previous version"
        assert os.listdir(mnt / "store" / "shards") == ["a.bin"]
        st.write_bytes("shards/b.bin", b"small writes still work")     # nothing left taking the space
