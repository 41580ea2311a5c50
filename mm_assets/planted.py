"""The generated data's planted truth mapped onto sample ids — for quality reports, tests and
the `oracle` step (the upper bound, the only decisions that read it; `mm_assets/oracle/`).
Truth refs name records by (annotation file, ordinal); the samples table carries both
(`source_name`, `ordinal`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import polars as pl


def load_truth(path: str | None) -> dict | None:
    """The planted-truth file of generated data; None when there is none (real data)."""
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def sample_id_by_ordinal(samples: pl.DataFrame, source_name: str = "main") -> dict[int, str]:
    rows = samples.select(["sample_id", "source_name", "ordinal"]).iter_rows()
    return {o: sid for sid, src, o in rows if src == source_name}


def sample_ids_of_refs(refs: Iterable[dict], samples: pl.DataFrame, source_name: str = "main") -> list[str]:
    """Sample ids of truth refs (``{"ordinal", ...}``); refs without an ingested sample
    (quarantined) are skipped."""
    by_ordinal = sample_id_by_ordinal(samples, source_name)
    return [by_ordinal[r["ordinal"]] for r in refs if r["ordinal"] in by_ordinal]
