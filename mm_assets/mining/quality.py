"""Quality measures of mining and decontamination (asset metadata and the quality report).

`domain_share` reads no truth (only the benchmark -> domain map of the taxonomy);
`planted_leaks` and `decontamination_report` compare with the planted truth and are for the
quality report only — no decision reads them.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from mm_assets.planted import sample_id_by_ordinal
from mm_assets.taxonomy import BENCHMARK_DOMAIN


def domain_share(neighbours: pl.DataFrame, *, k: int = 10, space: str | None = None,
                 benchmark_domain: Mapping[str, str] = BENCHMARK_DOMAIN) -> dict[str, float]:
    """Per benchmark: the fraction of its items' top-`k` neighbours that come from the domain
    the benchmark draws on."""
    df = neighbours.filter(pl.col("rank") <= k)
    if space is not None:
        df = df.filter(pl.col("space") == space)
    out = {}
    for (bench,), g in df.group_by("benchmark", maintain_order=True):
        out[bench] = float((g["domain"] == benchmark_domain[bench]).mean())
    return dict(sorted(out.items()))


def planted_leaks(truth: dict, samples: pl.DataFrame, eval_items: pl.DataFrame, source_name: str = "main"
                  ) -> pl.DataFrame:
    """The planted leaked eval items as ``sample_id, benchmark, eval_item_id, reencoded``.
    Truth gives DocVQA's questionId or the row index; uniform eval item ids end in the row
    index (``chartqa-00017``, ``pixmo_points-<sha>-00085``) except DocVQA's (the questionId)."""
    by_ordinal = sample_id_by_ordinal(samples, source_name)
    by_row = {}
    for bench, item in eval_items.select("benchmark", "item_id").iter_rows():
        key = item if bench == "docvqa" else int(item.rsplit("-", 1)[1])
        by_row[(bench, key)] = item
    rows = []
    for x in truth["leaked_eval_items"]:
        bench = x["benchmark"]
        key = str(x["item_id"]) if bench == "docvqa" else int(x["row_index"])
        sid = by_ordinal.get(x["ref"]["ordinal"])
        if sid is not None:
            rows.append({"sample_id": sid, "benchmark": bench, "eval_item_id": by_row.get((bench, key)),
                         "reencoded": bool(x["reencoded"])})
    return pl.DataFrame(rows, schema={"sample_id": pl.String, "benchmark": pl.String, "eval_item_id": pl.String,
                                      "reencoded": pl.Boolean})


def decontamination_report(decisions: pl.DataFrame, leaks: pl.DataFrame) -> dict:
    """Recall of the planted leaks among the removed (or would-be-removed) samples, and how
    many other samples the threshold removes."""
    flagged = decisions.filter((pl.col("decision") == "drop") | pl.col("reason").str.starts_with("would be removed"))
    removed = set(flagged["sample_id"].to_list())
    leaked = set(leaks["sample_id"].to_list())
    hit = leaked & removed
    right_item = leaks.join(flagged.select("sample_id", "related_id"), on="sample_id", how="inner")
    return {"planted": len(leaked), "removed": len(removed), "caught": len(hit),
            "recall": len(hit) / len(leaked) if leaked else float("nan"),
            "caught_reencoded": int(leaks.filter(pl.col("reencoded") & pl.col("sample_id").is_in(list(hit))).height),
            "planted_reencoded": int(leaks["reencoded"].sum()),
            "attributed_to_leaked_item": int((right_item["related_id"] == right_item["eval_item_id"]).sum()),
            "removed_not_leaked": len(removed - leaked)}
