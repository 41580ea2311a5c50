"""ChartQA (test): lmms-eval ``chartqa`` default prompt, relaxed accuracy (notes §3).

The mean over all items is lmms-eval's ``relaxed_overall``, the published number.
"""

from mm_assets.evaluation.benchmarks.base import Benchmark
from mm_assets.evaluation.metrics import METRIC_VERSIONS, relaxed_accuracy

POST_PROMPT = "\nAnswer the question with a single word."


def doc_to_text(item: dict) -> str:
    return f"{item['question']}{POST_PROMPT}"


def process(prediction: str, item: dict) -> tuple[str, float]:
    return (prediction or "").strip(), relaxed_accuracy(prediction, list(item["answers"]))


BENCHMARK = Benchmark(
    name="chartqa",
    prompt_version="lmms-eval@75571cfe chartqa default",
    doc_to_text=doc_to_text,
    process=process,
    metric_name="relaxed_accuracy",
    metric_version=METRIC_VERSIONS["relaxed_accuracy"],
)
