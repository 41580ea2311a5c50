"""Choosing eps for a target removal fraction in one pass (note section 4).

All functions work on the pooled eps-free scores ``M`` from
:func:`mm_assets.dedup.semdedup_scores` (one value per sample, singletons included
with score 0). The reference removes ``j`` at ``eps`` iff ``M_j > np.float32(1 - eps)``,
so for every eps the removed set is a threshold set of ``M`` and one sort answers
every eps.

Conventions:

* ``n`` is the number of all samples (singletons included); fractions are
  ``removed / n``.
* :func:`eps_for_target` only returns thresholds ``t >= 0`` (``eps <= 1``), so samples
  with score 0 (singletons, first members, members with no positive similarity) are
  never removed by the eps it returns. The removable samples are those with
  ``M > 0``.
* Reachable counts are 0, the number of removable samples, and every ``c`` with
  ``M_(c) > M_(c+1)`` (descending order). The target count is
  ``round(target * n)`` (half up); the nearest reachable count is chosen, the smaller
  one on an exact tie (less removal). ``exact`` says whether it equals the target.
* The threshold is placed mid-gap between the last removed and the first kept
  distinct score (rounded to float32, clamped into the gap), and
  ``eps = 1 - float64(t)``, for which ``np.float32(1 - eps) == t``. For target 0 the
  threshold is ``max(1, max score)`` (eps = 0, or a tiny negative eps when exact
  duplicates score 1 + ulp).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .semdedup import eps_threshold


@dataclass(frozen=True)
class EpsTarget:
    """Result of :func:`eps_for_target_result`."""

    eps: float
    threshold: float  # np.float32(1 - eps), as a Python float
    target_fraction: float
    target_count: int
    achieved_count: int
    achieved_fraction: float
    n: int
    removable: int  # samples with a positive score (the most any eps <= 1 can remove)
    exact: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _scores(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 1:
        raise ValueError("scores must be 1-D")
    return s


def removal_for_eps(scores, eps: float, removable=None) -> int:
    """Number of samples the reference rule removes at ``eps``: ``#{M > float32(1 - eps)}``.

    ``removable`` (optional bool mask, e.g. "not a singleton") restricts the count; it
    only matters for ``eps > 1`` where zero scores pass the negative threshold.
    """
    s = _scores(scores)
    hit = s > eps_threshold(eps)
    if removable is not None:
        hit &= np.asarray(removable, dtype=bool)
    return int(np.count_nonzero(hit))


def _eps_from_threshold(t: np.float32) -> float:
    eps = 1.0 - float(t)
    if eps_threshold(eps) != t:  # only possible for tiny t; nudge by one ulp of eps
        for cand in (math.nextafter(eps, 0.0), math.nextafter(eps, 2.0)):
            if eps_threshold(cand) == t:
                return cand
    return eps


def eps_for_target_result(scores, target_removal: float) -> EpsTarget:
    """The eps whose removal count is the reachable count nearest ``round(target * n)``."""
    s = _scores(scores)
    n = len(s)
    if not (0.0 <= float(target_removal) <= 1.0):
        raise ValueError(f"target_removal must be in [0, 1], got {target_removal}")
    target = int(math.floor(float(target_removal) * n + 0.5))
    q = np.sort(s[s > 0])  # ascending positive scores
    m = len(q)
    one = np.float32(1.0)

    def count_gt(v) -> int:  # #{q > v}
        return m - int(np.searchsorted(q, v, side="right"))

    if target <= 0 or m == 0:
        c = 0
    elif target >= m:
        c = m
    else:
        v = q[m - target]  # the target-th largest score
        lo = count_gt(v)  # reachable count just below (all strictly above the tie value)
        hi = m - int(np.searchsorted(q, v, side="left"))  # ... and just above (tie included)
        c = lo if (target - lo) <= (hi - target) else hi
    if c == 0:
        t = max(one, q[-1]) if m else one
    else:
        upper = q[m - c]  # smallest removed score
        lower = q[m - c - 1] if c < m else np.float32(0.0)  # largest kept score
        t = np.float32((float(upper) + float(lower)) / 2.0)
        if not (lower <= t < upper):
            t = np.float32(lower)
    t = np.float32(t)
    eps = _eps_from_threshold(t)
    achieved = removal_for_eps(s, eps)
    return EpsTarget(eps=eps, threshold=float(eps_threshold(eps)),
                     target_fraction=float(target_removal), target_count=target,
                     achieved_count=achieved, achieved_fraction=achieved / n if n else 0.0,
                     n=n, removable=m, exact=achieved == target)


def eps_for_target(scores, target_removal: float) -> float:
    """Eps for a target removal fraction (see :func:`eps_for_target_result` for details)."""
    return eps_for_target_result(scores, target_removal).eps


def removal_curve(scores, eps_grid, removable=None) -> list[tuple[float, float]]:
    """``[(eps, removed / n), ...]`` for every eps of the grid, from one sort."""
    s = _scores(scores)
    n = len(s)
    if removable is not None:
        s = np.where(np.asarray(removable, dtype=bool), s, np.float32(-np.inf))
    srt = np.sort(s)
    out = []
    for eps in eps_grid:
        t = eps_threshold(eps)
        removed = n - int(np.searchsorted(srt, t, side="right"))
        out.append((float(eps), removed / n if n else 0.0))
    return out
