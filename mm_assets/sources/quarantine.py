"""The quarantine table: one row per rejected record, with the reason and where it came from."""

from __future__ import annotations

import re

import polars as pl

from mm_assets.sources.reasons import Reason

QUARANTINE_SCHEMA = {
    "stage": pl.String,        # which step rejected it: "source" (record checks) or "raw_shards" (images)
    "source_name": pl.String,  # the configured source (annotation file + image tarballs)
    "annotation": pl.String,   # the JSON array's file name (its location: the source manifest's `uri`)
    "ordinal": pl.Int64,       # position of the element in the array
    "offset": pl.Int64,        # byte offset of the element in the file
    "domain": pl.String,       # null when the record is too broken to tell
    "source": pl.String,
    "original_id": pl.String,
    "image": pl.String,
    "reason": pl.String,
    "detail": pl.String,
}


def writable(text: str | None) -> str | None:
    """Text a UTF-8 table can hold: a lone surrogate (from a `\\ud800` escape in a rejected
    record's id or source) is written as its escape instead of failing the whole table."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


# "<_io.BytesIO object at 0x7fe171795490>" in an exception's message: a memory address, different
# in every process, would make two ingests of the same input write different tables (versions)
_OBJECT_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


def stable_detail(text: str) -> str:
    """A detail message without object addresses: the same rejection reads the same every run."""
    return _OBJECT_ADDRESS.sub(">", text)


class QuarantineRows:
    """Collects quarantine rows; `frame()` gives them in the fixed schema."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, *, stage: str, source_name: str, annotation: str, ordinal: int, offset: int,
            reason: Reason, detail: str, domain: str | None = None, source: str | None = None,
            original_id: str | None = None, image: str | None = None) -> None:
        self.rows.append({"stage": stage, "source_name": source_name, "annotation": annotation,
                          "ordinal": ordinal, "offset": offset, "domain": domain, "source": writable(source),
                          "original_id": writable(original_id), "image": writable(image),
                          "reason": str(reason), "detail": writable(stable_detail(detail))})

    def __len__(self) -> int:
        return len(self.rows)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=QUARANTINE_SCHEMA)


def counts_by_reason(df: pl.DataFrame) -> dict[str, int]:
    if df.is_empty():
        return {}
    return {r: int(n) for r, n in df.group_by("reason").len().sort("reason").iter_rows()}
