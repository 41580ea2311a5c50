"""Exact inner-product kNN with faiss: a GPU index when one is available, else the CPU one.

Vectors are L2-normalised, so inner product = cosine. `build_index` wraps
``faiss.IndexFlatIP``; with ``use_gpu="auto"`` and ``faiss.get_num_gpus() > 0`` (faiss-gpu, the
``gpu`` extra) the index is moved to all GPUs with ``faiss.index_cpu_to_all_gpus``; ``True``
requires a GPU, ``False`` stays on CPU. With faiss-cpu, which has no GPU symbols, the
fallback never touches them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def gpu_count() -> int:
    """GPUs faiss can use (0 with faiss-cpu)."""
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


@dataclass
class KnnIndex:
    """A faiss index plus where it lives ("cpu" or "gpu")."""
    index: object
    device: str

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int, batch: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities float32 [q, k'], row indices int64 [q, k'])``, best first;
        k' = min(k, ntotal)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k_eff = min(int(k), self.ntotal)
        if k_eff == 0 or len(q) == 0:
            return np.zeros((len(q), k_eff), np.float32), np.zeros((len(q), k_eff), np.int64)
        sims, idx = [], []
        for a in range(0, len(q), batch):
            s, i = self.index.search(q[a:a + batch], k_eff)
            sims.append(s)
            idx.append(i)
        return np.concatenate(sims), np.concatenate(idx).astype(np.int64)


def build_index(vectors: np.ndarray, use_gpu: bool | str = "auto") -> KnnIndex:
    """An exact inner-product index holding `vectors` (float32 [n, d])."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D, got shape {x.shape}")
    if use_gpu not in ("auto", True, False):
        raise ValueError(f"use_gpu must be 'auto', True or False, got {use_gpu!r}")
    gpus = gpu_count() if use_gpu else 0
    if use_gpu is True and gpus == 0:
        raise RuntimeError("use_gpu=True but faiss sees no GPU (install the `gpu` extra: faiss-gpu)")
    index = faiss.IndexFlatIP(x.shape[1])
    if gpus > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(x)
    return KnnIndex(index, "gpu" if gpus > 0 else "cpu")
