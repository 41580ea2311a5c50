"""Split one huge JSON array into its elements without loading it, tolerating bad elements.

The real annotation file is a single 21.8 GB JSON array. A streaming parser such as ijson
stops at the first malformed element or the first invalid UTF-8 byte, which would make one
bad record fatal for millions of good ones. This splitter tracks strings, nesting and the few
grammar rules that delimit values on the raw bytes, so each element comes out as its own byte
span (with its offset in the file) and is decoded and parsed on its own: a bad element is
quarantined, the rest go on.

A defect must not swallow what follows it. When the bytes stop being JSON inside an element —
a closer that does not match, an object whose `,` is not followed by a key (a missing `}`), a
string that "closes" before a letter (an unterminated `"` inverts every quote after it), a
value that starts with no value character — the element is cut there as broken and the
splitter resynchronises at the next element start it can see (`,` then `{`), searching from
the start of the suspicious string when a string caused it. An element larger than
`max_element_bytes` is reported with only its first bytes kept (memory stays bounded) and the
scan goes on at its real end; nesting deeper than `max_depth` is tracked by a counter.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

_SPECIAL = re.compile(rb'[\[\]{},":]')
_STRING_STOP = re.compile(rb'["\\]')
_NON_WS = re.compile(rb"[^ \t\r\n]")
_RESYNC = re.compile(rb",[ \t\r\n]*\{")
_CLOSER_OF = {ord("{"): ord("}"), ord("["): ord("]")}
_VALUE_START = frozenset(b'"{[-0123456789tfnNI')   # NaN/Infinity: what Python's json writes and reads
_AFTER_STRING = frozenset(b":,}]")
_AFTER_CLOSE = frozenset(b",}]")
_BOM = b"\xef\xbb\xbf"
_DECODER = json.JSONDecoder()
_WS = frozenset(b" \t\r\n")

DEFAULT_MAX_ELEMENT_BYTES = 64 << 20   # a Mammoth record is a few KB; anything this big is not one
DEFAULT_MAX_DEPTH = 512
PREVIEW_BYTES = 4096                   # what is kept of an oversized or broken element


@dataclass(frozen=True)
class ArrayElement:
    ordinal: int        # 0-based position in the array (fragments of a broken region count too)
    offset: int         # byte offset of the element's first byte in the file
    data: bytes         # the element's raw bytes (oversized/broken: at most PREVIEW_BYTES of them)
    truncated: bool     # the file ended inside this element
    unbalanced: bool    # the bytes stop being JSON inside the element (it cannot be parsed)
    size: int = -1      # bytes the element spans in the file (-1: len(data))
    oversized: bool = False
    problem: str = ""   # what broke and where, for the quarantine detail

    @property
    def length(self) -> int:
        return len(self.data) if self.size < 0 else self.size


class NotAJsonArray(ValueError):
    pass


class JsonArrayScanner:
    """Iterate the elements of a JSON array read from a binary file object.

    After iteration: `sha256` is the hash of every byte read, `bytes_read` the file size,
    `closed_properly` whether the closing `]` was found (with only whitespace after it), `bom`
    whether the file starts with a UTF-8 byte order mark (skipped), `resyncs` how many times
    the splitter had to resynchronise after broken bytes.
    """

    def __init__(self, f: IO[bytes], chunk_size: int = 8 << 20, max_element_bytes: int = DEFAULT_MAX_ELEMENT_BYTES,
                 max_depth: int = DEFAULT_MAX_DEPTH):
        self._f = f
        self._chunk_size = chunk_size
        self._max_element = max_element_bytes
        self._max_depth = max_depth
        self._hash = hashlib.sha256()
        self.bytes_read = 0
        self.closed_properly = False
        self.bom = False
        self.resyncs = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _read(self) -> bytes:
        chunk = self._f.read(self._chunk_size)
        self._hash.update(chunk)
        self.bytes_read += len(chunk)
        return chunk

    def __iter__(self) -> Iterator[ArrayElement]:
        yield from _Split(self)
        while self._read():     # what follows the end, so sha256 and bytes_read cover the whole file
            pass


class _Split:
    """The state machine behind `JsonArrayScanner` (one pass, one instance)."""

    def __init__(self, sc: JsonArrayScanner):
        self.sc = sc
        self.buf, self.base, self.pos = b"", 0, 0
        self.eof = False
        self.ordinal = 0
        # the current element
        self.start: int | None = None       # its first byte in buf, while it is kept whole
        self.offset = 0                     # its first byte in the file
        self.prefix = b""                   # its first bytes once it is too large to keep
        self.stack: list[int] = []
        self.deep = 0                       # nesting beyond max_depth, counted, not stored
        self.in_string = False
        self.escape = False
        self.string_start = 0               # file offset of the last string's opening quote
        self.expect: frozenset | None = None
        self.expect_what = ""
        self.after_string = False
        self.broken = ""
        self.resync_from: int | None = None  # file offset to search for the next element from
        self.expect_at = 0                   # file offset of the byte that set `expect`

    # -- buffer ------------------------------------------------------------------------------
    def refill(self, keep_from: int | None = None) -> bool:
        if self.eof:
            return False
        if self.start is not None and len(self.buf) - self.start > self.sc._max_element:
            self.prefix = self.buf[self.start:self.start + PREVIEW_BYTES]
            self.start = None               # from here on the element is scanned, not kept
        chunk = self.sc._read()
        if not chunk:
            self.eof = True
            return False
        keep = self.pos if self.start is None else min(self.start, self.pos)
        if keep_from is not None:
            keep = min(keep, keep_from)
        self.buf = self.buf[keep:] + chunk
        self.base += keep
        self.pos -= keep
        if self.start is not None:
            self.start -= keep
        return True

    def _next_non_ws(self) -> int | None:
        """Position of the next non-whitespace byte (refilling as needed), or None at EOF."""
        while True:
            if self.pos < len(self.buf) and self.buf[self.pos] not in _WS:
                return self.pos
            m = _NON_WS.search(self.buf, self.pos)
            if m is not None:
                return m.start()
            self.pos = len(self.buf)
            if not self.refill():
                return None

    # -- elements ----------------------------------------------------------------------------
    def _begin(self, at: int) -> None:
        self.start, self.offset, self.prefix = at, self.base + at, b""
        self.stack, self.deep, self.in_string, self.escape = [], 0, False, False
        self.expect, self.after_string, self.broken, self.resync_from = None, False, "", None
        self.pos = at

    def _emit(self, end: int, truncated: bool = False) -> ArrayElement:
        size = self.base + end - self.offset
        if self.start is not None:
            data = self.buf[self.start:end].rstrip(b" \t\r\n")
            el = ArrayElement(self.ordinal, self.offset, data, truncated, False, len(data))
        else:
            el = ArrayElement(self.ordinal, self.offset, self.prefix, truncated, False, size, oversized=True,
                              problem=f"larger than {self.sc._max_element} bytes ({size} bytes)")
        self.ordinal += 1
        self.start, self.prefix = None, b""
        return el

    def _broken(self, at: int, what: str, search_from: int | None = None) -> str:
        """The current element stops being JSON at buf position `at`."""
        self.broken = f"{what} at byte {self.base + at}"
        self.pos = at
        self.resync_from = search_from
        return "resync"

    # -- the scan ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ArrayElement]:
        if not self._open():
            return
        state = "between"
        while state != "end":
            if state == "between":              # one element, `]` or an empty slot
                p = self._next_non_ws()
                if p is None:
                    return
                c = self.buf[p]
                if c == ord("]"):
                    self.pos, state = p + 1, "closed"
                elif c == ord(","):
                    self.pos = p + 1
                else:
                    self._begin(p)
                    state = yield from self._element()
            elif state == "resync":
                state = yield from self._resync()
            else:                                # after the array's `]`: only whitespace may follow
                p = self._next_non_ws()
                if p is None:
                    self.sc.closed_properly = True
                    return
                self._begin(p)
                state = self._broken(p, "bytes after the array's closing ']'")

    def _open(self) -> bool:
        while len(self.buf) < len(_BOM) and self.refill(keep_from=0):
            pass
        if self.buf.startswith(_BOM):
            self.sc.bom = True
            self.pos = len(_BOM)
        p = self._next_non_ws()
        if p is None:
            return False
        if self.buf[p] != ord("["):
            raise NotAJsonArray(f"expected '[' at byte {self.base + p}, found {self.buf[p:p + 20]!r}")
        self.pos = p + 1
        return True

    def _element(self):
        """Scan one element from self.pos, yield it, and return what comes next: "between",
        "closed" (the array's `]` followed it), "resync" (it is broken) or "end" (EOF)."""
        while True:
            if self.expect is not None:
                p = self._next_non_ws()
                if p is None:
                    break
                c = self.buf[p]
                if c not in self.expect:      # search from what set the expectation (a `,` may begin the next start)
                    return self._broken(p, f"{self.expect_what}, found {bytes([c])!r}",
                                        self.string_start if self.after_string else self.expect_at)
                self.expect, self.after_string = None, False
            if self.in_string:
                if self.escape:                 # the byte after a backslash
                    if self.pos >= len(self.buf) and not self.refill():
                        break
                    self.pos += 1
                    self.escape = False
                    continue
                m = _STRING_STOP.search(self.buf, self.pos)
                if m is None:
                    self.pos = len(self.buf)
                    if not self.refill():
                        break
                    continue
                self.pos = m.start() + 1
                if self.buf[m.start()] == 0x5C:
                    self.escape = True
                    continue
                self.in_string = False
                if not self.stack and not self.deep:
                    return (yield from self._value_done(self.pos))
                self.expect, self.expect_what, self.after_string = (
                    _AFTER_STRING, "expected : , } or ] after a string", True)
                continue
            m = _SPECIAL.search(self.buf, self.pos)
            if m is None:
                self.pos = len(self.buf)
                if not self.refill():
                    break
                continue
            j = m.start()
            c = self.buf[j]
            self.pos = j + 1
            self.expect_at = self.base + j
            if c == ord('"'):
                self.in_string = True
                self.string_start = self.base + j
            elif c in (ord("{"), ord("[")):
                if len(self.stack) < self.sc._max_depth:
                    self.stack.append(c)
                else:
                    self.deep += 1
                if c == ord("{"):
                    self.expect, self.expect_what = frozenset(b'"}'), "expected a key or } after {"
                else:
                    self.expect, self.expect_what = _VALUE_START | {ord("]")}, "expected a value or ] after ["
            elif c in (ord("}"), ord("]")):
                if self.deep:
                    self.deep -= 1
                elif not self.stack:            # inside a scalar element
                    if c == ord("]"):           # ... that is the array's last
                        yield self._emit(j)
                        self.pos = j + 1
                        return "closed"
                    return self._broken(j, "'}' closes nothing")
                elif _CLOSER_OF[self.stack[-1]] != c:
                    return self._broken(j, f"{bytes([c])!r} closes {bytes([self.stack[-1]])!r}")
                else:
                    self.stack.pop()
                if not self.stack and not self.deep:
                    return (yield from self._value_done(j + 1))
                self.expect, self.expect_what = _AFTER_CLOSE, "expected , } or ] after a closing bracket"
            elif c == ord(","):
                if not self.stack and not self.deep:     # a scalar element ends here
                    yield self._emit(j)
                    return "between"
                if self.deep or self.stack[-1] == ord("["):
                    self.expect, self.expect_what = _VALUE_START, "expected a value after , in an array"
                else:
                    self.expect, self.expect_what = frozenset(b'"'), "expected a key after , in an object"
            else:                               # ':'
                if not self.deep and (not self.stack or self.stack[-1] != ord("{")):
                    return self._broken(j, "':' outside an object")
                self.expect, self.expect_what = _VALUE_START, "expected a value after :"
        el = self._emit(len(self.buf), truncated=True)
        yield ArrayElement(el.ordinal, el.offset, el.data, True, el.unbalanced, el.size, el.oversized,
                           el.problem or f"the file ends inside this element ({el.length} bytes read)")
        return "end"

    def _value_done(self, end: int):
        """A top-level value closed just before buf position `end`: emit it. What follows must
        be `,`, `]`, or — a missing comma — the next element's `{` or `[`."""
        yield self._emit(end)
        self.pos = end
        p = self._next_non_ws()
        if p is None:
            return "end"
        c = self.buf[p]
        if c == ord(","):
            self.pos = p + 1
            return "between"
        if c == ord("]"):
            self.pos = p + 1
            return "closed"
        if c in (ord("{"), ord("[")):
            self.pos = p
            return "between"
        self._begin(p)
        return self._broken(p, f"expected , or ] between elements, found {bytes([c])!r}")

    def _resync(self):
        """Yield the broken element, cut at the next plausible element start after the breakage
        — or after the suspicious string's opening quote — and return "between" with the scan at
        that `{`; "end" when the file ends first.

        A start is `,` then `{` whose value parses completely and is followed by `,`, by `{` (a
        missing comma) or by the array's `]` at the end of the file. A piece of the broken
        record (a turn object followed by the `]` of its list) is not taken for the next record;
        a complete value inside it followed by `,` can be, and then shows up as one more
        quarantined element — never as a lost record."""
        self.sc.resyncs += 1
        search = self.pos
        if self.resync_from is not None and self.resync_from - self.base >= 0:
            search = min(search, self.resync_from - self.base)
        if self.start is not None:          # a broken element is only reported: keep its first bytes
            search = max(search, self.start + 1)
            self.prefix = self.buf[self.start:min(self.pos, self.start + PREVIEW_BYTES)]
            self.start = None
        self.pos = search
        while True:
            m = _RESYNC.search(self.buf, self.pos)
            if m is not None:
                comma, brace = self.base + m.start(), self.base + m.end() - 1
                self.pos = m.start()
                if not self._parses_as_next(brace):
                    self.pos = comma - self.base + 1
                    continue
                yield self._broken_element(comma, truncated=False)
                self.pos = brace - self.base
                return "between"
            comma = self.buf.rfind(b",", self.pos)
            self.pos = comma if comma >= 0 else len(self.buf)     # a `,` at the end may begin the pattern
            if not self.refill():
                yield self._broken_element(self.base + len(self.buf), truncated=True)
                return "end"

    def _parses_as_next(self, offset: int) -> bool:
        """Whether the bytes at file `offset` parse as one complete JSON value followed by `,`,
        `{` or the array's final `]` (read ahead as far as the value needs, up to the largest
        element the splitter keeps)."""
        size = 1 << 16
        while True:
            while len(self.buf) - (offset - self.base) < size and self.refill():
                pass
            at = offset - self.base
            text = self.buf[at:at + size].decode("utf-8", "surrogateescape")
            try:
                _, end = _DECODER.raw_decode(text)
                break
            except json.JSONDecodeError as exc:
                more = len(self.buf) - at > size or not self.eof
                if exc.pos < len(text) - 2 or not more or size >= self.sc._max_element:
                    return False
                size *= 4
            except RecursionError:
                return False
        rest = text[end:].lstrip(" \t\r\n")
        if not rest and len(self.buf) - at > size:       # what follows lies beyond the slice
            rest = self.buf[at + size:at + size + 4096].decode("utf-8", "replace").lstrip(" \t\r\n")
        if rest[:1] in (",", "{", "["):
            return True
        return rest[:1] == "]" and not rest[1:].strip(" \t\r\n") and self.eof

    def _broken_element(self, end_offset: int, truncated: bool) -> ArrayElement:
        size = end_offset - self.offset
        el = ArrayElement(self.ordinal, self.offset, self.prefix[:size], truncated, True, size,
                          size > PREVIEW_BYTES, self.broken)
        self.ordinal += 1
        self.prefix = b""
        return el
