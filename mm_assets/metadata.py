"""Small helpers for Dagster asset metadata and content identities (plain Python)."""

import hashlib

import polars as pl

from mm_assets.storage import canonical_json


def content_digest(obj) -> str:
    """A short content hash of any JSON-able value: artifact versions and DataVersions."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()[:20]


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def markdown_table(df: pl.DataFrame, width: int = 80) -> str:
    """A small Markdown table for metadata previews in the Dagster UI."""
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.iter_rows():
        cells = [str(v).replace("\n", " ").replace("|", "\\|")[:width] for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
