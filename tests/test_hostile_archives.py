"""Hostile tarballs and images: indexing is linear in the member size with bounded memory, a
decompression bomb stops at a bound, and every image a later step could not use is quarantined
at ingest with its reason instead of crashing training."""

import io
import tarfile
import time
import tracemalloc
import zlib

import pytest
from PIL import Image

from mm_assets.sources.ingest import UnusableImage, inspect_image
from mm_assets.sources.reasons import Reason
from mm_assets.sources.tar_index import index_tarball


def zeros_tarball(path, member_mb: int) -> None:
    """A .tar.gz with one member of `member_mb` MiB of zeros (it compresses ~1000:1), streamed."""
    size = member_mb << 20
    header = tarfile.TarInfo("imgs/zeros.bin")
    header.size = size
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        f.write(comp.compress(header.tobuf(format=tarfile.GNU_FORMAT)))
        block = bytes(1 << 20)
        for _ in range(member_mb):
            f.write(comp.compress(block))
        f.write(comp.compress(bytes(1024)))           # the end-of-archive blocks
        f.write(comp.flush())


def index_cost(path, **kw) -> tuple[float, int, object]:
    tracemalloc.start()
    # this process's CPU time, not the wall clock: beside the suite's other processes the wall
    # time of the short 32 MB run doubled with a load spike (CI: 8.2x and 8.9x against 8)
    started = time.process_time()
    with open(path, "rb") as f:
        ix = index_tarball(f, path.name, **kw)
    seconds = time.process_time() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, ix


def test_indexing_a_very_compressible_member_is_linear_with_bounded_memory(tmp_path):
    """Before: 64/128/256 MB of zeros took 1.3/4.8/18.2 s and ~2× the member in memory."""
    seconds = {}
    for mb in (32, 128):
        zeros_tarball(tmp_path / f"z{mb}.tar.gz", mb)
        runs = []
        for _ in range(3):        # the best of three: a load spike beside the suite is not the index's cost
            took, peak, ix = index_cost(tmp_path / f"z{mb}.tar.gz")
            assert [m[0] for m in ix.members] == ["imgs/zeros.bin"] and ix.error is None
            assert peak < 24 << 20, f"{mb} MB member: peak {peak / 1e6:.0f} MB of Python memory"
            runs.append(took)
        seconds[mb] = min(runs)
    ratio = seconds[128] / seconds[32]
    assert ratio < 8, f"4× the member took {ratio:.1f}× the time (linear: ~4×)"


def test_a_decompression_bomb_stops_at_the_bound(tmp_path):
    """More than 200× expansion past the floor (1 GiB in production, 64 MiB here) stops indexing."""
    zeros_tarball(tmp_path / "bomb.tar.gz", 256)          # 256 MiB from ~0.25 MB: ~1000×
    seconds, peak, ix = index_cost(tmp_path / "bomb.tar.gz", bomb_floor=64 << 20)
    assert ix.truncated and "decompression bomb" in ix.error and ix.stopped_at
    assert ix.stopped_at < 80 << 20 and peak < 24 << 20


def image_bytes(fmt: str, size=(16, 12), **kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width × height (IHDR) around an empty image stream."""
    import struct

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def png_with_valid_crcs_and_a_broken_stream() -> bytes:
    """A PNG whose IDAT holds bytes that are not a deflate stream, with correct CRCs."""
    import struct

    data = image_bytes("PNG", (32, 32))
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start:start + 4])[0]
    junk = bytes((i * 37 + 11) % 256 for i in range(length))
    chunk = b"IDAT" + junk
    return data[:start] + struct.pack(">I", length) + chunk + struct.pack(">I", zlib.crc32(chunk)) + \
        data[start + 12 + length:]


@pytest.mark.parametrize("data, reason", [
    (png_with_valid_crcs_and_a_broken_stream(), Reason.CORRUPT_IMAGE),
    (image_bytes("PPM"), Reason.UNSUPPORTED_IMAGE),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", Reason.UNSUPPORTED_IMAGE),
    (png_header_only(12_000, 12_000), Reason.IMAGE_TOO_LARGE),
], ids=["png-valid-crc-broken-stream", "ppm", "eps", "png-12000x12000"])
def test_images_later_steps_cannot_use_are_refused_with_a_reason(data, reason):
    with pytest.raises(Exception) as info:
        inspect_image(data)
    got = info.value.reason if isinstance(info.value, UnusableImage) else Reason.CORRUPT_IMAGE
    assert got == reason, info.value


def test_an_mpo_is_kept_as_the_jpeg_it_is():
    from PIL import MpoImagePlugin  # noqa: F401  (registers MPO saving)

    first = Image.new("RGB", (20, 10), (0, 90, 200))
    buf = io.BytesIO()
    first.save(buf, format="MPO", save_all=True, append_images=[Image.new("RGB", (20, 10), (9, 9, 9))])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    assert inspect_image(buf.getvalue()) == ("jpg", 20, 10)
