"""Run one benchmark on one backend: per-item predictions and a bootstrap interval (no Dagster).

Decoding follows the references (greedy; max_new_tokens per benchmark as lmms-eval sets it,
notes §2–§5; Molmo's pointing outputs need more room). Each prediction row keeps the prompt's
hash, the raw output, the parsed answer and the score, so a number can always be re-derived.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable

import numpy as np
import polars as pl
from PIL import Image

from mm_assets.evaluation.backends.base import GenerationBackend, GenerationRequest
from mm_assets.evaluation.benchmarks import Benchmark
from mm_assets.metadata import content_digest
from mm_assets.storage import parquet_bytes

EVAL_CODE_VERSION = "2"
MAX_NEW_TOKENS = {"docvqa": 32, "chartqa": 16, "countbench": 16, "realworldqa": 16, "pixmo_points": 128}
PREDICTIONS_SCHEMA = {"item_id": pl.String, "prompt_hash": pl.String, "prompt": pl.String,
                      "raw_output": pl.String, "parsed": pl.String, "score": pl.Float64,
                      "item_scores": pl.String}


def eval_version(model_version: str, eval_set_version: str, backend: str, bench: Benchmark, max_items: int) -> str:
    """What an eval result is a function of: the checkpoint's and the eval set's content, the
    prompt, metric and generation settings, the backend."""
    return content_digest([EVAL_CODE_VERSION, model_version, eval_set_version, backend, bench.prompt_version,
                           bench.metric_version, max_items, MAX_NEW_TOKENS[bench.name]])


def eval_items(st, eval_pointer: dict, max_items: int) -> pl.DataFrame:
    """The items an evaluation scores: the eval set's first `max_items` (0: all)."""
    items = st.read_parquet(eval_pointer["root"])
    return items.head(max_items) if max_items else items


def eval_root(bench_name: str, version: str) -> str:
    """Where an evaluation is stored (content-addressed: found again by the same version)."""
    return f"eval_scores/{bench_name}/{version}"


def prompt_hash(prompt: str, prompt_version: str) -> str:
    return hashlib.sha256(f"{prompt_version}\0{prompt}".encode()).hexdigest()[:16]


def evaluate(backend: GenerationBackend, bench: Benchmark, items: pl.DataFrame, batch_size: int = 16,
             max_new_tokens: int | None = None, progress: Callable[[int, int], None] | None = None) -> pl.DataFrame:
    """Generate for every item in batches and score each raw output with the benchmark's rule."""
    max_new = max_new_tokens or MAX_NEW_TOKENS[bench.name]
    rows = items.to_dicts()
    out = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        prompts = [bench.doc_to_text(item) for item in batch]
        requests = [GenerationRequest(prompt=p, image=Image.open(io.BytesIO(item["image"])).convert("RGB")
                                      if item.get("image") else None)
                    for p, item in zip(prompts, batch)]
        outputs = backend.generate(requests, max_new_tokens=max_new)
        for item, prompt, raw in zip(batch, prompts, outputs):
            parsed, score = bench.process(raw, item)
            out.append({"item_id": item["item_id"], "prompt_hash": prompt_hash(prompt, bench.prompt_version),
                        "prompt": prompt, "raw_output": raw, "parsed": parsed, "score": float(score),
                        "item_scores": json.dumps(bench.item_scores(raw, item), sort_keys=True)})
        if progress:
            progress(min(start + batch_size, len(rows)), len(rows))
    return pl.DataFrame(out, schema=PREDICTIONS_SCHEMA)


def bootstrap_ci(scores: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean item score (items resampled with replacement)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, scores.size, size=(n_boot, scores.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def write_result(st, root: str, predictions: pl.DataFrame, bench: Benchmark, model_version: str, backend: str,
                 eval_set_version: str) -> None:
    """Store an evaluation: the predictions, then the result (last: it marks the stored result
    complete). The result names the model by its content version, not by where it was loaded from."""
    st.write_bytes(f"{root}/predictions.parquet", parquet_bytes(predictions))
    st.write_json(f"{root}/result.json", dict(summarize(predictions, bench), model_id=f"checkpoint@{model_version}",
                                              backend=backend, eval_set_version=eval_set_version,
                                              max_new_tokens=MAX_NEW_TOKENS[bench.name]))


def summarize(predictions: pl.DataFrame, bench: Benchmark) -> dict:
    scores = predictions["score"].to_numpy()
    lo, hi = bootstrap_ci(scores)
    subs: dict[str, list[float]] = {}
    for s in predictions["item_scores"].to_list():
        for k, v in json.loads(s).items():
            subs.setdefault(k, []).append(float(v))
    return {"benchmark": bench.name, "metric": bench.metric_name, "score": float(scores.mean()) if scores.size else 0.0,
            "ci95_low": lo, "ci95_high": hi, "n": int(scores.size),
            "sub_scores": {k: float(np.mean(v)) for k, v in sorted(subs.items())},
            "prompt_version": bench.prompt_version, "metric_version": bench.metric_version}
