"""CountBenchQA: lmms-eval ``countbench`` prompt and accuracy (notes §4.2).

Not the ``countbenchqa`` prompt, which prepends the caption and so leaks the count (§4.5).
"""

from mm_assets.evaluation.benchmarks.base import Benchmark
from mm_assets.evaluation.metrics import METRIC_VERSIONS, count_accuracy, count_answer

PRE_PROMPT = ("Look at the image carefully and count the objects. "
              "Answer with just a number, without any additional text. ")


def doc_to_text(item: dict) -> str:
    return f"{PRE_PROMPT}{item['question'].strip()}"


def process(prediction: str, item: dict) -> tuple[str, float]:
    return count_answer(prediction or ""), count_accuracy(prediction, item["number"])


BENCHMARK = Benchmark(
    name="countbench",
    prompt_version="lmms-eval@75571cfe countbench default",
    doc_to_text=doc_to_text,
    process=process,
    metric_name="count_accuracy",
    metric_version=METRIC_VERSIONS["count_accuracy"],
)
