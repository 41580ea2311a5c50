"""Reporting helpers for SemDeDup (no Dagster): removal curve plot and planted-group P/R."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from .eps import removal_curve

DEFAULT_EPS_GRID = tuple(float(e) for e in np.geomspace(1e-4, 0.5, 60))


def plot_removal_vs_eps(scores, path_or_buffer, target: float | None = None,
                        chosen_eps: float | None = None, eps_grid=None,
                        title: str = "SemDeDup: removed fraction vs eps") -> list[tuple[float, float]]:
    """Write a PNG of removed fraction vs eps (log x axis); returns the plotted curve.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change).
    ``target`` draws a horizontal line, ``chosen_eps`` a vertical one.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = sorted(set(DEFAULT_EPS_GRID if eps_grid is None else (float(e) for e in eps_grid)))
    if chosen_eps is not None and chosen_eps > 0:
        grid = sorted(set(grid) | {float(chosen_eps)})
    grid = [e for e in grid if e > 0]
    curve = removal_curve(scores, grid)
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([e for e, _ in curve], [100 * f for _, f in curve], marker=".", lw=1.2,
            label="removed (reference rule)")
    ax.set_xscale("log")
    ax.set_xlabel("eps  (remove iff max cosine to an earlier member > 1 - eps)")
    ax.set_ylabel("removed, % of all samples")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if target is not None:
        ax.axhline(100 * target, color="tab:red", ls="--", lw=1, label=f"target {100 * target:.1f}%")
    if chosen_eps is not None and chosen_eps > 0:
        ax.axvline(chosen_eps, color="tab:green", ls=":", lw=1.2, label=f"chosen eps {chosen_eps:.4g}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path_or_buffer, format="png")
    return curve


def precision_recall_vs_groups(removed_mask, sample_ids: Sequence[Hashable],
                               groups: Sequence[Sequence[Hashable]]) -> dict:
    """Precision/recall of a removal against planted near-duplicate groups.

    ``removed_mask[i]`` says whether ``sample_ids[i]`` was removed. Each group lists the
    ids of one planted near-duplicate set (the first is the original); groups must be
    disjoint. Ids of a group that are not in ``sample_ids`` are ignored, and the
    group's size ``g`` is its number of present members.

    * planted removable = sum over groups of ``g - 1`` (a perfect dedup keeps exactly
      one member per group, whichever it is);
    * TP = sum over groups of ``min(removed members, g - 1)``: a removed group member is
      a true positive as long as some other member of its group survives; if the whole
      group is removed, one of its removals counts as a false positive;
    * precision = TP / removed (all removals, in groups or not), recall = TP / planted
      removable. An empty denominator gives 1.0 (vacuously: nothing wrongly removed /
      nothing to find).
    """
    removed = np.asarray(removed_mask, dtype=bool)
    if len(removed) != len(sample_ids):
        raise ValueError("removed_mask and sample_ids must have the same length")
    pos = {sid: i for i, sid in enumerate(sample_ids)}
    if len(pos) != len(sample_ids):
        raise ValueError("sample_ids must be unique")
    seen: set = set()
    tp = planted_removable = fully_removed = in_groups_removed = 0
    for grp in groups:
        members = [pos[sid] for sid in grp if sid in pos]
        for i in members:
            if i in seen:
                raise ValueError(f"sample {sample_ids[i]!r} appears in more than one group")
            seen.add(i)
        g = len(members)
        if g == 0:
            continue
        r = int(np.count_nonzero(removed[members]))
        in_groups_removed += r
        planted_removable += g - 1
        tp += min(r, g - 1)
        fully_removed += int(r == g)
    total_removed = int(np.count_nonzero(removed))
    return {
        "removed": total_removed,
        "planted_removable": planted_removable,
        "true_positives": tp,
        "false_positives": total_removed - tp,
        "removed_outside_groups": total_removed - in_groups_removed,
        "groups": len(groups),
        "groups_fully_removed": fully_removed,
        "precision": tp / total_removed if total_removed else 1.0,
        "recall": tp / planted_removable if planted_removable else 1.0,
    }
