"""Split one huge JSON array into its elements without loading it, tolerating bad elements.

The real annotation file is a single 21.8 GB JSON array. A streaming parser such as ijson
stops at the first malformed element or the first invalid UTF-8 byte, which would make one
bad record fatal for millions of good ones. This splitter only tracks strings and bracket
nesting on raw bytes, so each element comes out as its own byte span (with its offset in the
file) and is decoded and parsed on its own: a bad element is quarantined, the rest go on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

_SPECIAL = re.compile(rb'[\[\]{},"]')
_NON_WS = re.compile(rb"\S")
_CLOSER_OF = {ord("{"): ord("}"), ord("["): ord("]")}


@dataclass(frozen=True)
class ArrayElement:
    ordinal: int        # 0-based position in the array
    offset: int         # byte offset of the element's first byte in the file
    data: bytes         # the element's raw bytes
    truncated: bool     # the file ended inside this element
    unbalanced: bool    # brackets did not match inside the element (it cannot be valid JSON)


class NotAJsonArray(ValueError):
    pass


class JsonArrayScanner:
    """Iterate the elements of a JSON array read from a binary file object.

    After iteration: `sha256` is the hash of every byte read, `bytes_read` the file size and
    `closed_properly` whether the closing `]` was found.
    """

    def __init__(self, f: IO[bytes], chunk_size: int = 8 << 20):
        self._f = f
        self._chunk_size = chunk_size
        self._hash = hashlib.sha256()
        self.bytes_read = 0
        self.closed_properly = False

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _read(self) -> bytes:
        chunk = self._f.read(self._chunk_size)
        self._hash.update(chunk)
        self.bytes_read += len(chunk)
        return chunk

    def __iter__(self) -> Iterator[ArrayElement]:
        buf = b""
        base = 0            # file offset of buf[0]
        pos = 0             # scan position in buf
        started = False    # seen the opening '['
        expect_elem = False
        elem_start: int | None = None
        stack: list[int] = []
        in_string = False
        unbalanced = False
        ordinal = 0

        def refill() -> bool:
            nonlocal buf, base, pos, elem_start
            chunk = self._read()
            if not chunk:
                return False
            keep = elem_start if elem_start is not None else pos
            buf = buf[keep:] + chunk
            base += keep
            pos -= keep
            if elem_start is not None:
                elem_start = 0
            return True

        def emit(end: int, truncated: bool) -> ArrayElement:
            nonlocal elem_start, ordinal, unbalanced, stack
            start = elem_start
            data = buf[start:end].rstrip()
            el = ArrayElement(ordinal, base + start, data, truncated, unbalanced or bool(stack))
            ordinal += 1
            elem_start = None
            unbalanced = False
            stack = []
            return el

        while True:
            if pos >= len(buf) and not refill():
                break
            if not started:
                m = _NON_WS.search(buf, pos)
                if m is None:
                    pos = len(buf)
                    continue
                if buf[m.start()] != ord("["):
                    raise NotAJsonArray(f"expected '[' at byte {base + m.start()}, found {buf[m.start():m.start() + 20]!r}")
                started = True
                expect_elem = True
                pos = m.start() + 1
                continue
            if expect_elem:
                m = _NON_WS.search(buf, pos)
                if m is None:
                    pos = len(buf)
                    continue
                c = buf[m.start()]
                if c == ord("]"):
                    self.closed_properly = True
                    break
                if c == ord(","):  # an empty slot such as "[a,,b]": skip it
                    pos = m.start() + 1
                    continue
                elem_start = m.start()
                expect_elem = False
                pos = m.start()
                continue
            if in_string:
                j = buf.find(b'"', pos)
                if j < 0:
                    # Keep a trailing backslash run in view so an escape split across chunks works.
                    pos = len(buf)
                    continue
                k = j - 1
                while k >= 0 and buf[k] == 0x5C:
                    k -= 1
                pos = j + 1
                if (j - 1 - k) % 2 == 0:
                    in_string = False
                continue
            m = _SPECIAL.search(buf, pos)
            if m is None:
                pos = len(buf)
                continue
            j = m.start()
            c = buf[j]
            pos = j + 1
            if c == ord('"'):
                in_string = True
            elif c in (ord("{"), ord("[")):
                stack.append(c)
            elif c in (ord("}"), ord("]")):
                if stack:
                    opener = stack.pop()
                    if _CLOSER_OF[opener] != c:
                        unbalanced = True
                        # resynchronise: close openers until one matches this closer
                        while stack and _CLOSER_OF[stack[-1]] != c:
                            stack.pop()
                        if stack:
                            stack.pop()
                elif c == ord("]"):
                    yield emit(j, truncated=False)
                    self.closed_properly = True
                    break
                else:
                    unbalanced = True
            elif c == ord(",") and not stack:
                yield emit(j, truncated=False)
                expect_elem = True
        if elem_start is not None and not self.closed_properly:
            yield emit(len(buf), truncated=True)
        # read what follows the closing ']' so sha256 and bytes_read cover the whole file
        while self._read():
            pass
