"""Semantic deduplication (SemDeDup, reference keep rule) as plain functions.

No Dagster here: the asset layer wraps these. See ``shared/notes/semdedup.md`` for the
specification reproduced by :func:`semdedup_keep_mask`.
"""

from .eps import (EpsTarget, eps_for_target, eps_for_target_result, removal_curve,
                  removal_for_eps)
from .kmeans import spherical_kmeans
from .report import plot_removal_vs_eps, precision_recall_vs_groups
from .semdedup import (DEFAULT_BLOCK_SIZE, DEFAULT_ROW_CHUNK, KEEP_MODES, PairwiseStats, centroid_keys,
                       eps_threshold, keep_mask_from_scores, semdedup_keep_mask,
                       semdedup_scores, semdedup_scores_with_argmax)

__all__ = [
    "DEFAULT_BLOCK_SIZE", "DEFAULT_ROW_CHUNK", "KEEP_MODES", "EpsTarget", "PairwiseStats", "centroid_keys",
    "eps_for_target", "eps_for_target_result", "eps_threshold", "keep_mask_from_scores",
    "plot_removal_vs_eps", "precision_recall_vs_groups", "removal_curve", "removal_for_eps",
    "semdedup_keep_mask", "semdedup_scores", "semdedup_scores_with_argmax", "spherical_kmeans",
]
