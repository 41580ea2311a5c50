"""Random access to images inside `.tar.gz` tarballs of a directory tree, without extracting.

Mammoth ships its images as gzip'd tarballs of a directory tree (about 34 GB each). Gzip has
no random access, so indexing takes two passes over each tarball:
1. a streaming pass that lists every member with its data offset and size in the
   *uncompressed* stream, detects truncation exactly (the gzip stream ends early), and hashes
   the compressed bytes;
2. an `indexed_gzip` pass that records seek points every `spacing` bytes, exported so later
   reads decompress at most one spacing window per image instead of the whole prefix.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import IO

import indexed_gzip

SEEK_POINT_SPACING = 2 << 20


def is_gzip_name(name: str) -> bool:
    return name.endswith((".tar.gz", ".tgz"))


def normalise_member_path(path: str) -> str:
    """Tar member names and JSON image paths compare after dropping './' and leading '/'."""
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


# Images barely compress; a tarball whose stream inflates more than MAX_EXPANSION times its
# compressed bytes, past BOMB_FLOOR, is a decompression bomb, not image data: indexing stops
# there (what came before stays usable).
MAX_EXPANSION = 200
BOMB_FLOOR = 1 << 30


class _DecompressingReader(io.RawIOBase):
    """A read-only stream of the uncompressed bytes of a (possibly multi-member) gzip file.

    Tracks how many uncompressed bytes were produced and whether the gzip stream ended
    cleanly; a truncated file simply runs out of input (no exception), which is how a cut
    download looks. Memory and time are linear in what is read: at most `chunk_size` bytes are
    inflated at a time (`max_length`), however compressible the input, and the output is
    handed out by offset, never re-sliced.
    """

    def __init__(self, raw: IO[bytes], gzipped: bool, chunk_size: int = 1 << 20, max_expansion: int = MAX_EXPANSION,
                 bomb_floor: int = BOMB_FLOOR):
        self._raw = raw
        self._gzipped = gzipped
        self._chunk = chunk_size
        self._max_expansion = max_expansion
        self._bomb_floor = bomb_floor
        self._d = zlib.decompressobj(wbits=31) if gzipped else None
        self._input = b""               # compressed bytes not inflated yet
        self._pending = b""             # inflated bytes not handed out yet, from `_off`
        self._off = 0
        self.hash = hashlib.sha256()
        self.compressed_bytes = 0
        self.uncompressed_bytes = 0
        self.inflated_bytes = 0
        self.stream_complete = not gzipped
        self.corrupt: str | None = None
        self.bomb = False
        self._input_done = False

    def readable(self) -> bool:
        return True

    def _read_raw(self) -> bytes:
        data = self._raw.read(self._chunk)
        if not data:
            self._input_done = True
        self.hash.update(data)
        self.compressed_bytes += len(data)
        return data

    def _fill(self) -> None:
        while self._off >= len(self._pending) and not self._input_done:
            if not self._gzipped:
                self._pending, self._off = self._read_raw(), 0
                return
            if not self._input:
                self._input = self._read_raw()
                if not self._input:
                    return
            try:
                if self._d.eof:         # a further gzip member (or trailing bytes) follows
                    self._d = zlib.decompressobj(wbits=31)
                    self.stream_complete = False
                out = self._d.decompress(self._input, self._chunk)
            except zlib.error as exc:
                self.corrupt = str(exc)
                self._input_done = True
                return
            if self._d.eof:
                self._input = self._d.unused_data
                self.stream_complete = True
            else:
                self._input = self._d.unconsumed_tail
                self.stream_complete = False
            self._pending, self._off = out, 0
            self.inflated_bytes += len(out)
            if self.inflated_bytes > max(self._max_expansion * self.compressed_bytes, self._bomb_floor):
                self.corrupt = (f"decompression bomb: {self.inflated_bytes} bytes inflated from "
                                f"{self.compressed_bytes} (more than {self._max_expansion}×); stopped there")
                self.bomb = True
                self._input_done = True

    def readinto(self, b) -> int:
        self._fill()
        n = min(len(b), len(self._pending) - self._off)
        b[:n] = memoryview(self._pending)[self._off:self._off + n]
        self._off += n
        self.uncompressed_bytes += n
        return n

    def drain(self) -> None:
        while True:
            self._fill()
            if self._off >= len(self._pending):
                return
            self.uncompressed_bytes += len(self._pending) - self._off
            self._off = len(self._pending)


@dataclass
class TarballIndex:
    name: str                         # tarball file name
    sha256: str                       # hash of the tarball's bytes as stored
    compressed_bytes: int
    uncompressed_bytes: int           # bytes of tar stream recovered
    truncated: bool                   # the file ends before its gzip/tar stream does
    error: str | None                 # what went wrong, if anything
    stopped_at: int | None = None     # a decompression bomb: indexing stopped at this uncompressed byte
    members: list[tuple[str, int, int, bool]] = field(default_factory=list)
    # (normalised path, data offset in uncompressed stream, size, complete)
    refused: list[tuple[str, str]] = field(default_factory=list)
    # (normalised path, why): members that are never read as images — links, devices, `..` names


def refusal(m: tarfile.TarInfo) -> str | None:
    """Why a tar member is not read as an image, or None for a regular file that can be.

    Nothing is ever extracted (members are read by offset), so a link or a `..` name cannot
    write outside a directory here; they are refused all the same, so a record naming one is
    quarantined with the reason instead of reading whatever the link's target happens to be.
    """
    if m.issym():
        return f"a symbolic link to {m.linkname!r}; links are not followed"
    if m.islnk():
        return f"a hard link to {m.linkname!r}; links are not followed"
    if not m.isfile():
        return None if m.isdir() else "not a regular file (a device, FIFO or other special member)"
    if ".." in m.name.replace("\\", "/").split("/"):
        return "its name leaves the archive's directory (a `..` component)"
    return None


def index_tarball(f: IO[bytes], name: str, bomb_floor: int = BOMB_FLOOR) -> TarballIndex:
    """One streaming pass: list the members of a tarball and detect truncation."""
    reader = _DecompressingReader(f, gzipped=is_gzip_name(name), bomb_floor=bomb_floor)
    members: list[tuple[str, int, int, bool]] = []
    refused: list[tuple[str, str]] = []
    error = None
    try:
        with tarfile.open(fileobj=io.BufferedReader(reader, 1 << 20), mode="r|") as tar:
            for m in tar:
                why = refusal(m)
                if why is not None:
                    refused.append((normalise_member_path(m.name), why))
                elif m.isfile():
                    members.append((normalise_member_path(m.name), m.offset_data, m.size, True))
    except (tarfile.TarError, EOFError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    reader.drain()
    available = reader.uncompressed_bytes
    truncated = (not reader.stream_complete) or reader.corrupt is not None or error is not None
    if reader.corrupt:
        error = f"gzip stream corrupt: {reader.corrupt}"
    elif not reader.stream_complete:
        error = f"gzip stream ends early after {reader.compressed_bytes} compressed bytes"
    members = [(p, off, size, off + size <= available) for p, off, size, _ in members]
    return TarballIndex(name, reader.hash.hexdigest(), reader.compressed_bytes, available,
                        truncated, error, available if reader.bomb else None, members, refused)


def build_seek_points(f: IO[bytes], spacing: int = SEEK_POINT_SPACING, up_to: int | None = None) -> bytes:
    """Second pass over a gzip tarball: the exported `indexed_gzip` seek-point index (of the
    first `up_to` uncompressed bytes only, for a tarball whose index pass stopped early)."""
    g = indexed_gzip.IndexedGzipFile(fileobj=f, spacing=spacing, drop_handles=False)
    try:
        if up_to is None:
            g.build_full_index()
        else:
            g.seek(up_to)
        buf = io.BytesIO()
        g.export_index(fileobj=buf)
        return buf.getvalue()
    finally:
        g.close()


class MemberReader:
    """Reads member bytes from one tarball by (offset, size), using stored seek points."""

    def __init__(self, f: IO[bytes], gzipped: bool, seek_points: bytes | None):
        self._raw = f
        self._g = None
        if gzipped:
            self._g = indexed_gzip.IndexedGzipFile(fileobj=f, spacing=SEEK_POINT_SPACING,
                                                   drop_handles=False)
            if seek_points:
                self._g.import_index(fileobj=io.BytesIO(seek_points))

    def read(self, offset: int, size: int) -> bytes:
        src = self._g if self._g is not None else self._raw
        src.seek(offset)
        data = src.read(size)
        if len(data) != size:
            raise EOFError(f"member at offset {offset} has {len(data)} of {size} bytes")
        return data

    def close(self) -> None:
        if self._g is not None:
            self._g.close()
        self._raw.close()
