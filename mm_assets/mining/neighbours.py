"""Eval-item neighbours in the training pool (mining) and each training sample's nearest eval
item (decontamination), by exact faiss inner-product search.

Both return the same columns (`NEIGHBOUR_SCHEMA`): ``benchmark, eval_item_id, sample_id,
domain, similarity, rank, space`` — rank 1 is the most similar.

* `eval_neighbours`: for every eval item, its top-k training samples (index: training).
* `nearest_eval_items`: for every training sample, its most similar eval item (index: eval
  items), i.e. its maximum similarity to any eval item, which a decontamination threshold
  needs (a top-k list per eval item could miss a contaminated sample when more than k
  training rows sit above the threshold).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from .eval_embeddings import EvalEmbeddings
from .index import build_index

NEIGHBOUR_SCHEMA = {
    "benchmark": pl.String, "eval_item_id": pl.String, "sample_id": pl.String, "domain": pl.String,
    "similarity": pl.Float64, "rank": pl.Int32, "space": pl.String,
}


def _check(train_ids, train_domains, train_vectors, dim) -> np.ndarray:
    x = np.ascontiguousarray(train_vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(train_ids) or len(train_ids) != len(train_domains):
        raise ValueError(f"{len(train_ids)} ids, {len(train_domains)} domains, vectors {x.shape}")
    if len(x) and x.shape[1] != dim:
        raise ValueError(f"training vectors have dimension {x.shape[1]}, eval vectors {dim}")
    return x


def eval_neighbours(evals: EvalEmbeddings, train_ids: Sequence[str], train_domains: Sequence[str],
                    train_vectors: np.ndarray, *, k: int, space: str, use_gpu: bool | str = "auto"
                    ) -> pl.DataFrame:
    """Top-`k` training samples of every eval item in one `space` ("image" or "question");
    the training vectors must be in that space (image rows' image embeddings, or question
    embeddings)."""
    q = evals.vectors(space)
    x = _check(train_ids, train_domains, train_vectors, q.shape[1])
    if len(x) == 0 or len(q) == 0:
        return pl.DataFrame(schema=NEIGHBOUR_SCHEMA)
    sims, idx = build_index(x, use_gpu).search(q, k)
    n_eval, k_eff = sims.shape
    ids = np.asarray(list(train_ids), dtype=object)
    doms = np.asarray(list(train_domains), dtype=object)
    flat = idx.ravel()
    return pl.DataFrame({
        "benchmark": np.repeat(np.asarray(evals.benchmarks, dtype=object), k_eff).tolist(),
        "eval_item_id": np.repeat(np.asarray(evals.item_ids, dtype=object), k_eff).tolist(),
        "sample_id": ids[flat].tolist(), "domain": doms[flat].tolist(),
        "similarity": sims.ravel().astype(np.float64), "rank": np.tile(np.arange(1, k_eff + 1), n_eval),
        "space": [space] * (n_eval * k_eff),
    }, schema=NEIGHBOUR_SCHEMA)


def nearest_eval_items(evals: EvalEmbeddings, train_ids: Sequence[str], train_domains: Sequence[str],
                       train_vectors: np.ndarray, *, space: str = "image", use_gpu: bool | str = "auto"
                       ) -> pl.DataFrame:
    """Every training sample's most similar eval item in `space` (rank 1 rows)."""
    q = evals.vectors(space)
    x = _check(train_ids, train_domains, train_vectors, q.shape[1])
    if len(x) == 0 or len(q) == 0:
        return pl.DataFrame(schema=NEIGHBOUR_SCHEMA)
    sims, idx = build_index(q, use_gpu).search(x, 1)
    items = np.asarray(evals.item_ids, dtype=object)[idx[:, 0]]
    benches = np.asarray(evals.benchmarks, dtype=object)[idx[:, 0]]
    return pl.DataFrame({
        "benchmark": benches.tolist(), "eval_item_id": items.tolist(), "sample_id": list(train_ids),
        "domain": list(train_domains), "similarity": sims[:, 0].astype(np.float64),
        "rank": np.ones(len(x), dtype=np.int32), "space": [space] * len(x),
    }, schema=NEIGHBOUR_SCHEMA)
