"""How well an embedding space separates planted near-duplicates (quality report helpers).

The pipeline itself never reads the planted truth; these functions are for the quality
report and the embedder's acceptance check. No Dagster import here.

Measures, for one embedding space (rows L2-normalised):

* ``dup_to_original``: cosine of every planted duplicate to its group's original;
* ``nearest_nondup``: for every sample, the highest cosine to any sample *outside* its own
  group (the similarity a threshold must stay above to not remove distinct samples);
* ``frac_dup_above_p99``: fraction of duplicates whose similarity to their original exceeds
  the 99th percentile of ``nearest_nondup``;
* ``removal``: a SemDeDup proxy with one global cluster. Samples in their given order;
  ``M_j`` = max cosine to any earlier sample; the top ``k`` by ``M_j`` are removed, ``k`` =
  the planted number of removable duplicates (sum of group size - 1, the planted rate).
  Precision/recall with the keep-one-per-group rule: a removed group member is a true
  positive as long as some member of its group survives.
* ``detection``: the symmetric version, top ``k'`` by max cosine to any other sample with
  ``k'`` = all samples in groups (originals included); a flagged sample is correct if it
  is in a group.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def planted_groups(truth: dict, samples, source_name: str = "main", domains: Sequence[str] | None = None
                   ) -> list[dict]:
    """Planted near-duplicate groups as sample ids: ``[{group_id, kind, members}]``,
    original first. `samples` is the samples table (polars) with ``sample_id``,
    ``source_name`` and ``ordinal``; planted refs are matched on (source_name, ordinal)."""
    from mm_assets.planted import sample_id_by_ordinal

    by_ordinal = sample_id_by_ordinal(samples, source_name)
    out = []
    for g in truth["near_duplicate_groups"]:
        if domains is not None and g["original"]["domain"] not in domains:
            continue
        refs = [g["original"], *g["duplicates"]]
        members = [by_ordinal[r["ordinal"]] for r in refs if r["ordinal"] in by_ordinal]
        if len(members) >= 2:
            out.append({"group_id": g["group_id"], "kind": g["kind"], "members": members})
    return out


def _prf(removed: np.ndarray, group_of: np.ndarray, n_groups: int) -> dict:
    tp = planted = 0
    sizes = np.bincount(group_of[group_of >= 0], minlength=n_groups)
    rem = np.bincount(group_of[(group_of >= 0) & removed], minlength=n_groups)
    planted = int((sizes - 1).clip(min=0).sum())
    tp = int(np.minimum(rem, (sizes - 1).clip(min=0)).sum())
    total = int(removed.sum())
    return {"removed": total, "planted_removable": planted, "true_positives": tp,
            "precision": tp / total if total else 1.0, "recall": tp / planted if planted else 1.0}


def separation_report(sample_ids: Sequence[str], vectors: np.ndarray, groups: list[dict],
                      removal_k: int | None = None) -> dict:
    """The measures in the module docstring for one space. `vectors` rows follow
    `sample_ids`; group members missing from `sample_ids` are ignored."""
    x = np.asarray(vectors, dtype=np.float32)
    n = len(sample_ids)
    pos = {s: i for i, s in enumerate(sample_ids)}
    group_of = np.full(n, -1, dtype=np.int64)
    kinds, dup_pairs = [], []      # (dup index, original index, kind)
    g_count = 0
    for g in groups:
        idx = [pos[m] for m in g["members"] if m in pos]
        if len(idx) < 2:
            continue
        group_of[idx] = g_count
        kinds.append(g["kind"])
        dup_pairs += [(i, idx[0], g["kind"]) for i in idx[1:]]
        g_count += 1
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    same = (group_of[:, None] == group_of[None, :]) & (group_of[:, None] >= 0)
    nearest_nondup = np.where(same, -np.inf, sim).max(axis=1)
    p99 = float(np.percentile(nearest_nondup, 99))
    d2o = np.array([sim[i, j] for i, j, _ in dup_pairs], dtype=np.float64)
    dup_kinds = np.array([k for _, _, k in dup_pairs])

    # SemDeDup proxy: M_j = max over earlier samples
    earlier = np.where(np.tri(n, k=-1, dtype=bool), sim, -np.inf)
    m = earlier.max(axis=1)
    k = removal_k if removal_k is not None else int(sum((group_of == g).sum() - 1 for g in range(g_count)))
    removed = np.zeros(n, dtype=bool)
    if k > 0:
        removed[np.argsort(-m, kind="stable")[:k]] = True
    removal = _prf(removed, group_of, g_count)
    removal["threshold"] = float(np.sort(m)[::-1][k - 1]) if k > 0 else None
    removal["recall_by_kind"] = {}
    for kind in sorted(set(kinds)):
        gs = [g for g in range(g_count) if kinds[g] == kind]
        mask = np.isin(group_of, gs)
        removal["recall_by_kind"][kind] = _prf(removed & mask, np.where(mask, group_of, -1), g_count)["recall"]

    # symmetric detection
    in_group = group_of >= 0
    k2 = int(in_group.sum())
    flagged = np.zeros(n, dtype=bool)
    if k2 > 0:
        flagged[np.argsort(-sim.max(axis=1), kind="stable")[:k2]] = True
    tp2 = int((flagged & in_group).sum())
    detection = {"flagged": k2, "precision": tp2 / k2 if k2 else 1.0, "recall": tp2 / k2 if k2 else 1.0}

    by_kind = {}
    for kind in sorted(set(dup_kinds.tolist())):
        v = d2o[dup_kinds == kind]
        by_kind[kind] = {"n": int(len(v)), "min": float(v.min()), "median": float(np.median(v)),
                         "frac_above_p99": float((v > p99).mean())}
    return {
        "samples": n, "dim": int(x.shape[1]) if x.ndim == 2 else 0, "groups": g_count,
        "duplicates": len(dup_pairs),
        "nearest_nondup": {"median": float(np.median(nearest_nondup)), "p99": p99,
                           "max": float(nearest_nondup.max())},
        "dup_to_original": {"min": float(d2o.min()) if len(d2o) else None,
                            "median": float(np.median(d2o)) if len(d2o) else None},
        "frac_dup_above_p99": float((d2o > p99).mean()) if len(d2o) else 1.0,
        "by_kind": by_kind, "removal": removal, "detection": detection,
    }


def with_exact_duplicates(groups: list[dict], sample_ids: Sequence[str], keys: Sequence) -> list[dict]:
    """`groups` plus the exact duplicates nobody planted: samples whose content key (image
    sha256, or the embedded text) is identical. A content twin of a planted member joins
    that group; other identical sets become groups of kind ``"exact_unplanted"``."""
    out = [dict(g, members=list(g["members"])) for g in groups]
    where = {m: k for k, g in enumerate(out) for m in g["members"]}
    by_key: dict = {}
    for sid, key in zip(sample_ids, keys):
        if key is not None:
            by_key.setdefault(key, []).append(sid)
    for key, sids in by_key.items():
        if len(sids) < 2:
            continue
        planted = sorted({where[s] for s in sids if s in where})
        loose = [s for s in sids if s not in where]
        if not loose:
            continue
        if planted:
            out[planted[0]]["members"].extend(loose)
            for s in loose:
                where[s] = planted[0]
        else:
            out.append({"group_id": f"exact-{len(out)}", "kind": "exact_unplanted", "members": loose})
            for s in loose:
                where[s] = len(out) - 1
    return out
