"""SemDeDup keep rule (reference semantics), computed in column blocks.

This module reproduces exactly which samples the public SemDeDup code
(facebookresearch/SemDeDup) removes, as specified in ``shared/notes/semdedup.md``
sections 1-2, without ever building a cluster's full Gram matrix.

Definitions (per cluster c with s >= 2 members; singletons are always kept):

* **Order.** ``key_i = float32(1 - float32(<x_i, c_hat>))`` where ``c_hat`` is the
  centroid divided by its norm (only its direction matters; the embeddings are used
  as given and never renormalised). The inner product is accumulated in float64 and
  rounded once to float32, so bit-identical rows get identical keys wherever they
  sit in the matrix (the index tie-break then applies, as in the reference's
  torch-cosine path).

  - ``hardest``: key descending, ties by ascending global index (stable sort).
  - ``easiest``: the exact reverse of ``hardest`` (ties by descending index).
  - ``random``: members in ascending global index, permuted by
    ``np.random.default_rng([seed, cluster_id]).permutation(s)``. The permutation
    depends only on (seed, cluster id, member set), never on how clusters are split
    across workers or processed.

* **Score.** ``M_j = max(0, max_{i placed before j} <x_i, x_j>)`` in float32 (the
  first member gets 0; negative similarities clip to 0). This is the max over *any*
  earlier member, whether or not that member is itself removed (not greedy).

* **Decide.** remove ``j`` iff ``M_j > np.float32(1 - eps)`` (strict, float32).
  For ``eps > 1`` the threshold is negative and every member of a non-singleton
  cluster is removed, the first one included (as in the reference).

The pairwise step works on ``X_ordered`` one column block ``[b0, b1)`` at a time:
``S^T = X_ordered[b0:b1] @ X_ordered[:b1].T`` (float32 sgemm through numpy), the
entries with ``i >= j`` are masked, and a row max/argmax gives ``M`` and the
duplicate-of index. Only rows ``i < b1`` are computed (triangular work); the
candidate rows are further split into chunks of at most ``row_chunk`` so the work
buffer is ``block_size x row_chunk`` floats whatever the cluster size. Memory is
``O(s_max * d + block_size * row_chunk)``; no ``s x s`` matrix is ever allocated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

KEEP_MODES = ("hardest", "easiest", "random")
DEFAULT_BLOCK_SIZE = 1024
DEFAULT_ROW_CHUNK = 16384
_NEG_INF = np.float32(-np.inf)


# ----------------------------------------------------------------------------- inputs


def _as_embeddings(embeddings) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {x.shape}")
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    return x


def _as_labels(labels, n: int, k: int | None) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
    if n and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
    lab = lab.astype(np.int64, copy=False)
    if n:
        lo, hi = int(lab.min()), int(lab.max())
        if lo < 0:
            raise ValueError(f"labels must be >= 0 (cluster ids), got min {lo}")
        if k is not None and hi >= k:
            raise ValueError(f"label {hi} out of range for {k} centroids")
    return lab


def _check_keep(keep: str) -> str:
    if keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
    return keep


def eps_threshold(eps: float) -> np.float32:
    """The reference's decision threshold: ``np.float32(1 - eps)`` (compare with ``>``)."""
    return np.float32(1.0 - float(eps))


# ----------------------------------------------------------------------------- order


def unit_centroids_f64(centroids, d: int) -> np.ndarray:
    """Centroid directions in float64 (a zero centroid stays zero: every key is 1)."""
    c = np.asarray(centroids, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != d:
        raise ValueError(f"centroids must have shape (k, {d}), got {c.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", c, c))
    return c / np.where(norms > 0, norms, 1.0)[:, None]


def centroid_keys(embeddings, labels, centroids, chunk: int = 8192) -> np.ndarray:
    """``float32(1 - float32(<x_i, c_hat[label_i]>))`` for every row (the sort key).

    The inner product is accumulated in float64 per row (position independent) and
    rounded once to float32; the subtraction is done in float32, like the reference.
    """
    x = _as_embeddings(embeddings)
    n, d = x.shape
    chat = unit_centroids_f64(centroids, d)
    lab = _as_labels(labels, n, len(chat))
    keys = np.empty(n, dtype=np.float32)
    one = np.float32(1.0)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        dot = np.einsum("ij,ij->i", x[a:b].astype(np.float64), chat[lab[a:b]])
        np.subtract(one, dot.astype(np.float32), out=keys[a:b])
    return keys


def cluster_order(member_idx: np.ndarray, keys: np.ndarray | None, keep: str, seed: int,
                  cluster_id: int) -> np.ndarray:
    """Processing order of one cluster, as local positions into ``member_idx``.

    ``member_idx`` must be ascending global indices; ``keys`` their sort keys.
    """
    s = len(member_idx)
    if keep == "random":
        return np.random.default_rng([int(seed), int(cluster_id)]).permutation(s)
    # Stable ascending sort of -key == key descending, ties in ascending index.
    perm = np.argsort(-keys, kind="stable")
    if keep == "easiest":
        perm = perm[::-1]
    return perm


# ----------------------------------------------------------------------------- blocked pairwise


def _padded_stride(w: int) -> int:
    """Row stride (in floats) for a ``(m, w)`` work view: avoid multiples of 128 floats.

    Power-of-two leading dimensions of the sgemm output cause cache-set aliasing
    (measured 2x slower for 1024x1024 blocks on this machine).
    """
    stride = -(-w // 16) * 16
    if stride % 128 == 0:
        stride += 16
    return stride


@dataclass
class PairwiseStats:
    """What the blocked pairwise step did (for benchmarks/reporting)."""

    clusters: int = 0
    gemm_calls: int = 0
    flops: int = 0  # 2*m*w*d summed over every sgemm actually issued
    useful_flops: int = 0  # sum_c s_c (s_c - 1) d: the strict upper triangle only
    gemm_s: float = 0.0  # wall time inside the sgemm calls
    keys_s: float = 0.0  # centroid keys (float64 dot products)
    gather_s: float = 0.0  # ordering + gathering each cluster's rows
    pairwise_s: float = 0.0  # blocked scoring (sgemm + mask + row max), all clusters
    shapes: list | None = field(default_factory=list)  # (m, w) of every sgemm; None = off


class PairwiseWorkspace:
    """Reusable buffers for :func:`score_ordered` (ordered rows, sgemm work block, masks)."""

    def __init__(self, d: int, s_max: int, block_size: int, row_chunk: int):
        self.block = int(block_size)
        self.rows = max(int(row_chunk), self.block)
        w_max = min(self.rows, s_max)
        m_max = min(self.block, s_max)
        self.xo = np.empty((max(s_max, 1), d), dtype=np.float32)
        self.work = np.empty(m_max * (-(-max(w_max, 1) // 16) * 16 + 16), dtype=np.float32)
        # upper[r, q] = q >= r: the entries i >= j inside the diagonal sub-block.
        self.upper = np.triu(np.ones((m_max, m_max), dtype=bool))
        self.best = np.empty(m_max, dtype=np.float32)
        self.arg = np.empty(m_max, dtype=np.int64)
        self.rows_ar = np.arange(m_max)

    def view(self, m: int, w: int) -> np.ndarray:
        stride = _padded_stride(w)
        return self.work[: m * stride].reshape(m, stride)[:, :w]


def block_shapes(s: int, block_size: int = DEFAULT_BLOCK_SIZE,
                 row_chunk: int = DEFAULT_ROW_CHUNK) -> list[tuple[int, int]]:
    """The ``(m, w)`` sgemm shapes :func:`score_ordered` issues for a cluster of ``s`` rows
    (each costs ``2*m*w*d`` FLOPs): column block ``[b0, b1)`` against rows ``[0, b1)``,
    in row chunks of at most ``max(row_chunk, block_size)``.
    """
    B, R = int(block_size), max(int(row_chunk), int(block_size))
    out = []
    for b0 in range(0, s, B):
        b1 = min(s, b0 + B)
        c1 = b1
        while c1 > 0:
            c0 = max(0, c1 - R)
            out.append((b1 - b0, c1 - c0))
            c1 = c0
    return out


def score_ordered(xo: np.ndarray, ws: PairwiseWorkspace, scores_out: np.ndarray, arg_out: np.ndarray,
                  stats: PairwiseStats | None = None) -> None:
    """Blocked scores for one cluster whose rows ``xo`` are already in processing order.

    Writes ``scores_out[j] = max(0, max_{i<j} <xo_i, xo_j>)`` and ``arg_out[j]`` = the
    local position of the earliest ``i < j`` attaining the (unclipped) max, ``-1`` for
    ``j = 0``.
    """
    s, d = xo.shape
    B, R = ws.block, ws.rows
    for b0 in range(0, s, B):
        b1 = min(s, b0 + B)
        m = b1 - b0
        q = xo[b0:b1]
        best = ws.best[:m]
        arg = ws.arg[:m]
        best.fill(_NEG_INF)
        arg.fill(-1)
        rows = ws.rows_ar[:m]
        # Candidate rows [0, b1), in chunks from the end so the diagonal sub-block lies in
        # the first chunk; later (lower-index) chunks win ties, giving the earliest argmax.
        c1 = b1
        while c1 > 0:
            c0 = max(0, c1 - R)
            w = c1 - c0
            st = ws.view(m, w)
            if stats is None:
                np.matmul(q, xo[c0:c1].T, out=st)
            else:
                t0 = time.perf_counter()
                np.matmul(q, xo[c0:c1].T, out=st)
                stats.gemm_s += time.perf_counter() - t0
                stats.gemm_calls += 1
                stats.flops += 2 * m * w * d
                if stats.shapes is not None:
                    stats.shapes.append((m, w))
            if c1 == b1:
                np.copyto(st[:, b0 - c0:], _NEG_INF, where=ws.upper[:m, :m])
            a = st.argmax(axis=1)
            v = st[rows, a]
            if c1 == b1:
                best[:] = v
                arg[:] = a + c0
            else:
                upd = v >= best
                best[upd] = v[upd]
                arg[upd] = a[upd] + c0
            c1 = c0
        none = best == _NEG_INF  # only j == 0
        arg[none] = -1
        np.maximum(best, np.float32(0.0), out=scores_out[b0:b1])
        arg_out[b0:b1] = arg


def _group_clusters(labels: np.ndarray):
    order = np.argsort(labels, kind="stable")
    if len(order) == 0:
        return order, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    sl = labels[order]
    starts = np.concatenate(([0], np.flatnonzero(sl[1:] != sl[:-1]) + 1))
    ends = np.concatenate((starts[1:], [len(sl)]))
    return order, starts, ends, sl[starts]


def _scores_impl(embeddings, labels, centroids, keep, seed, block_size, row_chunk, stats,
                 want_arg: bool):
    keep = _check_keep(keep)
    if block_size < 1 or row_chunk < 1:
        raise ValueError("block_size and row_chunk must be >= 1")
    x = _as_embeddings(embeddings)
    n, d = x.shape
    k = None if centroids is None else len(np.asarray(centroids))
    if keep != "random" and centroids is None:
        raise ValueError(f"keep={keep!r} needs centroids")
    lab = _as_labels(labels, n, k)
    scores = np.zeros(n, dtype=np.float32)
    dup_of = np.full(n, -1, dtype=np.int64) if want_arg else None
    singleton = np.zeros(n, dtype=bool)
    if n == 0:
        return scores, dup_of, singleton
    order, starts, ends, cids = _group_clusters(lab)
    sizes = ends - starts
    singleton[order[starts[sizes == 1]]] = True
    t0 = time.perf_counter()
    keys = centroid_keys(x, lab, centroids) if keep != "random" else None
    if stats is not None:
        stats.keys_s += time.perf_counter() - t0
    big = np.flatnonzero(sizes >= 2)
    if len(big) == 0:
        return scores, dup_of, singleton
    s_max = int(sizes.max())
    ws = PairwiseWorkspace(d, s_max, block_size, row_chunk)
    sc_buf = np.empty(s_max, dtype=np.float32)
    ar_buf = np.empty(s_max, dtype=np.int64)
    for c in big:
        t0 = time.perf_counter()
        st, en = int(starts[c]), int(ends[c])
        s = en - st
        idx = order[st:en]
        perm = cluster_order(idx, None if keys is None else keys[idx], keep, seed, int(cids[c]))
        gidx = idx[perm]
        xo = ws.xo[:s]
        np.take(x, gidx, axis=0, out=xo, mode="clip")
        t1 = time.perf_counter()
        score_ordered(xo, ws, sc_buf[:s], ar_buf[:s], stats)
        if stats is not None:
            stats.pairwise_s += time.perf_counter() - t1
            stats.gather_s += t1 - t0
            stats.clusters += 1
            stats.useful_flops += s * (s - 1) * d
        scores[gidx] = sc_buf[:s]
        if want_arg:
            a = ar_buf[:s]
            dup_of[gidx] = np.where(a >= 0, gidx[np.maximum(a, 0)], -1)
    return scores, dup_of, singleton


# ----------------------------------------------------------------------------- public API


def semdedup_scores(embeddings, labels, centroids, keep: str = "hardest", seed: int = 0, *,
                    block_size: int = DEFAULT_BLOCK_SIZE, row_chunk: int = DEFAULT_ROW_CHUNK,
                    stats: PairwiseStats | None = None) -> np.ndarray:
    """Eps-free score ``M_j`` of every sample (float32, 0 for first members and singletons).

    Sample ``j`` is removed at ``eps`` iff ``M_j > np.float32(1 - eps)`` (for eps <= 1).
    ``centroids`` may be ``None`` for ``keep="random"``.
    """
    scores, _, _ = _scores_impl(embeddings, labels, centroids, keep, seed, block_size, row_chunk,
                                stats, want_arg=False)
    return scores


def semdedup_scores_with_argmax(embeddings, labels, centroids, keep: str = "hardest", seed: int = 0,
                                *, block_size: int = DEFAULT_BLOCK_SIZE,
                                row_chunk: int = DEFAULT_ROW_CHUNK,
                                stats: PairwiseStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, dup_of)``: ``dup_of[j]`` is the global index of the earlier-ordered member
    of j's cluster with the largest similarity to j (the earliest one on ties), i.e. the
    sample j is a duplicate of; ``-1`` for singletons and first members. (When every
    earlier member has a negative similarity the score clips to 0 but ``dup_of`` still
    names the most similar earlier member.)
    """
    scores, dup_of, _ = _scores_impl(embeddings, labels, centroids, keep, seed, block_size,
                                     row_chunk, stats, want_arg=True)
    return scores, dup_of


def keep_mask_from_scores(scores, eps: float, singleton=None) -> np.ndarray:
    """Keep mask for ``eps`` from precomputed scores: keep iff ``not M > float32(1 - eps)``.

    ``singleton`` (bool per sample) is only needed for ``eps > 1``, where the threshold is
    negative and a zero score would otherwise remove singletons (which are always kept).
    """
    scores = np.asarray(scores, dtype=np.float32)
    t = eps_threshold(eps)
    keep = ~(scores > t)
    if t < 0:
        if singleton is None:
            raise ValueError("eps > 1 needs the singleton mask (singletons are always kept)")
        keep |= np.asarray(singleton, dtype=bool)
    return keep


def semdedup_keep_mask(embeddings, labels, centroids, eps: float, keep: str = "hardest",
                       seed: int = 0, *, block_size: int = DEFAULT_BLOCK_SIZE,
                       row_chunk: int = DEFAULT_ROW_CHUNK,
                       stats: PairwiseStats | None = None) -> np.ndarray:
    """Reference SemDeDup keep mask (True = kept) for one ``eps``; see the module docstring."""
    scores, _, singleton = _scores_impl(embeddings, labels, centroids, keep, seed, block_size,
                                        row_chunk, stats, want_arg=False)
    return keep_mask_from_scores(scores, eps, singleton)
