"""DocVQA (validation): lmms-eval ``docvqa_val`` default prompt, ANLS (notes §2)."""

from mm_assets.evaluation.benchmarks.base import Benchmark
from mm_assets.evaluation.metrics import METRIC_VERSIONS, anls

POST_PROMPT = "\nAnswer the question using a single word or phrase."


def doc_to_text(item: dict) -> str:
    # lmms-eval uses the question as stored (no trim) between the empty pre- and the post-prompt.
    return f"{item['question']}{POST_PROMPT}"


def process(prediction: str, item: dict) -> tuple[str, float]:
    return (prediction or "").strip(), anls(prediction, list(item["answers"]))


BENCHMARK = Benchmark(
    name="docvqa",
    prompt_version="lmms-eval@75571cfe docvqa default",
    doc_to_text=doc_to_text,
    process=process,
    metric_name="anls",
    metric_version=METRIC_VERSIONS["anls"],
)
