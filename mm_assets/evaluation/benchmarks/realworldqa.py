"""RealWorldQA: lmms-eval prompt (the question verbatim) and HEAD exact match (notes §5).

``item_scores`` also reports the legacy (v0.2.3–v0.6.x) rule, the one behind the
LLaVA-OneVision numbers, as ``realworldqa_accuracy_legacy`` (§5.6).
"""

from mm_assets.evaluation.benchmarks.base import Benchmark
from mm_assets.evaluation.metrics import (
    METRIC_VERSIONS,
    realworldqa_accuracy,
    realworldqa_accuracy_legacy,
    realworldqa_parse,
)


def doc_to_text(item: dict) -> str:
    # The question already carries the options and the answer instruction; the default
    # pre- and post-prompts are empty.
    return item["question"].strip()


def process(prediction: str, item: dict) -> tuple[str, float]:
    answer = item["answers"][0]
    return realworldqa_parse(prediction, answer), realworldqa_accuracy(prediction, answer, item["question"])


def sub_scores(prediction: str, item: dict) -> dict[str, float]:
    answer, question = item["answers"][0], item["question"]
    return {"realworldqa_accuracy": realworldqa_accuracy(prediction, answer, question),
            "realworldqa_accuracy_legacy": realworldqa_accuracy_legacy(prediction, answer, question)}


BENCHMARK = Benchmark(
    name="realworldqa",
    prompt_version="lmms-eval@75571cfe realworldqa default",
    doc_to_text=doc_to_text,
    process=process,
    metric_name="realworldqa_accuracy",
    metric_version=METRIC_VERSIONS["realworldqa_accuracy"],
    sub_scores=sub_scores,
)
