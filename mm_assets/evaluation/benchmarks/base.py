"""The shape of one benchmark task, in the lmms-eval style: prompt, per-item scoring, aggregation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: how to prompt for an eval item and how to score the model's raw output.

    Items use the uniform eval-set schema (``mm_assets.sources.eval_sets.EVAL_SCHEMA``).
    ``process`` returns (parsed answer, score); the benchmark score is ``aggregate`` of the
    per-item scores. ``item_scores`` gives every per-item number the benchmark reports
    (e.g. precision and recall next to F1); by default just ``{metric_name: score}``.
    """

    name: str
    prompt_version: str
    doc_to_text: Callable[[dict], str]
    process: Callable[[str, dict], tuple[str, float]]
    metric_name: str
    metric_version: str
    aggregate: str = "mean"
    sub_scores: Callable[[str, dict], dict[str, float]] | None = None

    def item_scores(self, prediction: str, item: dict) -> dict[str, float]:
        if self.sub_scores is not None:
            return self.sub_scores(prediction, item)
        return {self.metric_name: self.process(prediction, item)[1]}
