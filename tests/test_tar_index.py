"""Tarball index: random access equals extraction; truncation is detected, not hidden."""

import io
import os
import random
import tarfile

import pytest

from mm_assets.sources.tar_index import MemberReader, build_seek_points, index_tarball


def make_tarball(path, n=120, size=40_000, gz=True):
    rnd = random.Random(0)
    contents = {}
    with tarfile.open(path, "w:gz" if gz else "w") as t:
        for i in range(n):
            data = rnd.randbytes(size)
            name = f"./dir{i % 3}/sub/img_{i:04d}.bin"
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
            contents[name[2:]] = data
    return contents


@pytest.mark.parametrize("gz", [True, False])
def test_random_access_matches_extraction(tmp_path, gz):
    path = tmp_path / ("a.tar.gz" if gz else "a.tar")
    contents = make_tarball(path, gz=gz)
    with open(path, "rb") as f:
        ix = index_tarball(f, path.name)
    assert not ix.truncated and ix.error is None
    assert {m[0] for m in ix.members} == set(contents)
    seek = None
    if gz:
        with open(path, "rb") as f:
            seek = build_seek_points(f, spacing=256 << 10)
    reader = MemberReader(open(path, "rb"), gz, seek)
    members = list(ix.members)
    random.Random(1).shuffle(members)
    for name, off, size, complete in members:
        assert complete
        assert reader.read(off, size) == contents[name]
    reader.close()


def test_truncated_tarball_is_detected_and_its_survivors_readable(tmp_path):
    path = tmp_path / "a.tar.gz"
    contents = make_tarball(path)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with open(cut, "rb") as f:
        ix = index_tarball(f, cut.name)
    assert ix.truncated and "ends early" in ix.error
    assert 0 < len(ix.members) < len(contents)
    with open(cut, "rb") as f:
        seek = build_seek_points(f)
    reader = MemberReader(open(cut, "rb"), True, seek)
    for name, off, size, complete in ix.members:
        if complete:
            assert reader.read(off, size) == contents[name]
        else:
            with pytest.raises(EOFError):
                reader.read(off, size)
    reader.close()
