"""A benchmark's subgroups, from its reference split (never the scored split).

Where the benchmark labels its questions (DocVQA `question_types`, ChartQA `type`
human/augmented), a subgroup is one label; otherwise the reference questions are clustered
(spherical k-means over their text embeddings) and a subgroup is one cluster. Each subgroup is
described for a generator by its most frequent content words and a few in-context examples.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import polars as pl

SUBGROUP_SCHEMA = {"benchmark": pl.String, "subgroup": pl.String, "by": pl.String, "items": pl.Int64,
                   "description": pl.String, "examples": pl.String}
_WORD = re.compile(r"[A-Za-z]{3,}")
_STOP = frozenset("the and are there what which how many this that image picture with for from shown "
                  "does answer question single word phrase number just any not please".split())


def native_question_type(benchmark: str, native: str | None) -> str | None:
    """The benchmark's own label of a question, or None where it has none."""
    row = json.loads(native) if native else {}
    if benchmark == "docvqa":
        types = row.get("question_types") or []
        return str(types[0]) if types else None
    if benchmark == "chartqa" and row.get("type"):
        return str(row["type"]).split("_")[0]         # human_test / augmented_train -> human / augmented
    return None


def assign_subgroups(items: pl.DataFrame, question_vectors: np.ndarray, *, clusters: int = 4,
                     seed: int = 0) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """`items` (uniform eval schema: benchmark, item_id, native) with `subgroup` and `by`
    ("question_type" or "question_cluster") added, and the unit centroids of each clustered
    benchmark (to place other items of it, `place_in_subgroups`); `question_vectors` are
    aligned with `items`."""
    from mm_assets.dedup.kmeans import spherical_kmeans

    if len(items) != len(question_vectors):
        raise ValueError(f"{len(items)} items but {len(question_vectors)} question vectors")
    subgroup = [""] * len(items)
    by = [""] * len(items)
    centroids: dict[str, np.ndarray] = {}
    rows = list(enumerate(zip(items["benchmark"].to_list(), items["native"].to_list())))
    for bench in sorted(set(items["benchmark"].to_list())):
        idx = [i for i, (b, _) in rows if b == bench]
        types = [native_question_type(bench, rows[i][1][1]) for i in idx]
        if all(t is not None for t in types):
            for i, t in zip(idx, types):
                subgroup[i], by[i] = f"{bench}/{t}", "question_type"
            continue
        k = max(1, min(clusters, len(idx) // 5))
        x = np.asarray(question_vectors[idx], dtype=np.float32)
        if k > 1:
            labels, centroids[bench], _ = spherical_kmeans(x, k, seed=seed)
        else:
            labels = np.zeros(len(idx), dtype=np.int64)
            mean = x.mean(axis=0, keepdims=True)
            centroids[bench] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        for i, c in zip(idx, labels):
            subgroup[i], by[i] = f"{bench}/cluster{int(c)}", "question_cluster"
    out = items.with_columns(pl.Series("subgroup", subgroup, dtype=pl.String), pl.Series("by", by, dtype=pl.String))
    return out, centroids


def place_in_subgroups(items: pl.DataFrame, question_vectors: np.ndarray,
                       centroids: dict[str, np.ndarray]) -> pl.DataFrame:
    """Other items of the same benchmarks (the scored split) in the reference split's subgroups:
    by their own question type, or by the nearest reference cluster of their question. Reads
    questions only, never answers: for reporting scores per subgroup."""
    subgroup = []
    for (bench, native), v in zip(items.select("benchmark", "native").iter_rows(), question_vectors):
        t = native_question_type(bench, native)
        if bench in centroids:
            subgroup.append(f"{bench}/cluster{int(np.argmax(centroids[bench] @ v))}")
        else:
            subgroup.append(f"{bench}/{t}" if t is not None else None)
    return items.select("benchmark", "item_id").with_columns(pl.Series("subgroup", subgroup, dtype=pl.String))


def describe_subgroups(items: pl.DataFrame, examples: int = 3) -> pl.DataFrame:
    """One row per subgroup: its size, its most frequent content words and `examples` reference
    question/answer pairs (JSON), the in-context examples a generator is shown."""
    rows = []
    for (bench, sub, by), part in sorted(items.group_by("benchmark", "subgroup", "by"), key=lambda g: g[0]):
        words = Counter(w.lower() for q in part["question"].to_list() for w in _WORD.findall(q or "")
                        if w.lower() not in _STOP)
        top = ", ".join(w for w, _ in words.most_common(6))
        shots = [{"question": q, "answer": (a or [""])[0]}
                 for q, a in part.sort("item_id").select("question", "answers").head(examples).iter_rows()]
        rows.append((bench, sub, by, part.height, f"{bench} questions about {top}" if top else f"{bench} questions",
                     json.dumps(shots, ensure_ascii=False)))
    return pl.DataFrame(rows, schema=SUBGROUP_SCHEMA, orient="row")


def pick_candidates(neighbours: pl.DataFrame, items: pl.DataFrame, per_subgroup: dict[str, int],
                    excluded: set[str]) -> pl.DataFrame:
    """Up to `per_subgroup[s]` distinct training samples for each subgroup s, taken round-robin over the
    subgroup's reference items by neighbour rank (so every reference item contributes), never
    one of `excluded` (sources too close to a scored eval image). `neighbours`: reference item →
    training sample rows (benchmark, eval_item_id, sample_id, domain, similarity, rank)."""
    of_item = dict(zip(items["item_id"].to_list(), items["subgroup"].to_list()))
    table = neighbours.with_columns(pl.col("eval_item_id").replace_strict(of_item, default=None).alias("subgroup"))
    out = []
    for sub, wanted in per_subgroup.items():
        part = table.filter(pl.col("subgroup") == sub).sort(["rank", "eval_item_id"])
        taken: set[str] = set()
        for r in part.iter_rows(named=True):
            if len(taken) >= wanted:
                break
            if r["sample_id"] in taken or r["sample_id"] in excluded:
                continue
            taken.add(r["sample_id"])
            out.append((sub, r["benchmark"], r["sample_id"], r["domain"], r["eval_item_id"], r["similarity"],
                        r["rank"]))
    return pl.DataFrame(out, orient="row", schema={
        "subgroup": pl.String, "benchmark": pl.String, "sample_id": pl.String, "domain": pl.String,
        "reference_item_id": pl.String, "similarity": pl.Float64, "rank": pl.Int32})
