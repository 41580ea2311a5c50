"""Canaries: known-bad sample ids that every filtering step is checked against (no Dagster import).

Users keep a canary file by hand — one ``sample_id`` per line; ``#`` starts a comment (whole
line or trailing); blank lines are ignored — to sanity-check their filters: a filter that
removes 20 % of the data should remove clearly more than 20 % of the canaries.
:func:`canary_report` measures that for any step's decisions table:

* ``canaries``: canary ids present in the decisions table (``missing``: the others);
* ``found``: canaries the step removed (``decision == "drop"``);
* ``recall`` = found / canaries;
* ``removal_fraction`` = removed samples / samples in the table;
* ``lift`` = recall / removal_fraction (1.0 = no better than removing at random; None when
  nothing was removed or there is no canary).

On generated data the report may take its canaries from the planted truth
(:func:`canaries_from_truth`); decisions never read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from mm_assets.planted import sample_ids_of_refs
from mm_assets.storage import file_storage


@dataclass(frozen=True)
class Canaries:
    ids: tuple[str, ...]                           # unique, in file order
    unknown: tuple[str, ...] = field(default=())   # ids not among the known sample ids


def parse_canaries(text: str) -> list[str]:
    """Sample ids of a canary file's text, unique, in order."""
    ids: dict[str, None] = {}
    for line in text.splitlines():
        sid = line.split("#", 1)[0].strip()
        if sid:
            ids[sid] = None
    return list(ids)


def load_canaries(uri: str, known_ids: Iterable[str] | None = None,
                  storage_options: dict | None = None) -> Canaries:
    """Read a canary file (local path or fsspec URI). Ids not in ``known_ids`` (when given) are
    listed in ``unknown`` — reported, not fatal (a canary may have left the pool upstream)."""
    st, name = file_storage(uri, storage_options)
    ids = parse_canaries(st.read_bytes(name).decode("utf-8"))
    unknown: tuple[str, ...] = ()
    if known_ids is not None:
        known = set(known_ids)
        unknown = tuple(i for i in ids if i not in known)
    return Canaries(ids=tuple(ids), unknown=unknown)


def canaries_from_truth(truth: dict, samples: pl.DataFrame, source_name: str = "main",
                        kinds: Iterable[str] | None = None) -> list[str]:
    """Generated data only: the planted low-quality samples (optionally only some ``kinds``)
    as sample ids of the samples table (``sample_id``, ``source_name``, ``ordinal``)."""
    wanted = None if kinds is None else set(kinds)
    refs = [e["ref"] for e in truth["low_quality"] if wanted is None or e["kind"] in wanted]
    return sample_ids_of_refs(refs, samples, source_name)


def canary_report(decisions: pl.DataFrame, canary_ids: Iterable[str]) -> dict:
    """Recall and lift of one step's decisions on the canaries (see the module docstring).

    ``decisions`` has ``sample_id`` and ``decision``; a sample counts as removed if any of its
    rows says ``drop``.
    """
    per_sample = (decisions.group_by("sample_id")
                  .agg((pl.col("decision") == "drop").any().alias("removed")))
    removed = dict(per_sample.iter_rows())
    ids = list(dict.fromkeys(canary_ids))
    present = [i for i in ids if i in removed]
    found = sum(1 for i in present if removed[i])
    n = len(removed)
    n_removed = sum(1 for v in removed.values() if v)
    recall = found / len(present) if present else None
    removal_fraction = n_removed / n if n else 0.0
    lift = recall / removal_fraction if recall is not None and removal_fraction > 0 else None
    return {"canaries": len(present), "found": found, "recall": recall, "removal_fraction": removal_fraction,
            "lift": lift, "samples": n, "removed": n_removed, "missing": len(ids) - len(present)}
