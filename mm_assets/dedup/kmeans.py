"""Spherical k-means with faiss (the reference's clustering, note section 1 step 2).

Fit ``faiss.Kmeans(d, k, niter, spherical=True, seed)`` on a random sample of at most
``max_points_per_centroid * k`` rows (all rows when the data is smaller), then assign
every row with an inner-product index, so ``labels[i] = argmax_c <x_i, c>``. The
centroids are returned as float32 unit rows.
"""

from __future__ import annotations

import time

import numpy as np


def spherical_kmeans(embeddings, k: int, *, niter: int = 20, seed: int = 1234,
                     max_points_per_centroid: int = 256, nredo: int = 1,
                     assign_batch: int = 262144, verbose: bool = False):
    """Returns ``(labels int64 (n,), centroids float32 (k', d) unit rows, info dict)``.

    ``k`` larger than the number of rows is clipped to ``n`` (``info["k_clipped"]``).
    The fit sample is drawn with ``np.random.default_rng(seed)`` without replacement.
    The reference uses ``niter=100, seed=1234``; ``niter`` defaults to 20 here for speed.
    """
    import faiss  # local import: faiss is heavy and only this function needs it

    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got shape {x.shape}")
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n == 0:
        raise ValueError("cannot cluster 0 rows")
    k_eff = min(int(k), n)
    info: dict = {"n": n, "d": d, "k_requested": int(k), "k": k_eff, "k_clipped": k_eff < k,
                  "niter": int(niter), "seed": int(seed), "spherical": True,
                  "max_points_per_centroid": int(max_points_per_centroid)}
    if k_eff < k:
        info["message"] = f"k={k} > n={n} rows: clipped to k={k_eff}"

    t0 = time.perf_counter()
    n_train = min(n, int(max_points_per_centroid) * k_eff)
    if n_train < n:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=n_train, replace=False))
        train = x[sample]
    else:
        train = x
    km = faiss.Kmeans(d, k_eff, niter=int(niter), spherical=True, seed=int(seed),
                      nredo=int(nredo), verbose=bool(verbose),
                      max_points_per_centroid=max(int(max_points_per_centroid), 1),
                      min_points_per_centroid=1)
    km.train(train)
    del train
    cent = np.ascontiguousarray(km.centroids, dtype=np.float32).reshape(k_eff, d)
    norms = np.linalg.norm(cent.astype(np.float64), axis=1)
    cent = (cent / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
    t1 = time.perf_counter()

    index = faiss.IndexFlatIP(d)
    index.add(cent)
    labels = np.empty(n, dtype=np.int64)
    for a in range(0, n, assign_batch):
        b = min(n, a + assign_batch)
        _, idx = index.search(x[a:b], 1)
        labels[a:b] = idx[:, 0]
    t2 = time.perf_counter()

    sizes = np.bincount(labels, minlength=k_eff)
    nonempty = sizes[sizes > 0]
    info.update({
        "n_train": n_train, "fit_s": t1 - t0, "assign_s": t2 - t1,
        "objective": float(km.obj[-1]) if len(km.obj) else None,
        "empty_clusters": int((sizes == 0).sum()), "singleton_clusters": int((sizes == 1).sum()),
        "cluster_size_max": int(sizes.max()), "cluster_size_mean": float(nonempty.mean()),
        "cluster_size_cv": float(nonempty.std() / nonempty.mean()),
    })
    return labels, cent, info
