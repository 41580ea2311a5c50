"""PixMo-Points eval: Molmo's pointing prompt and precision / recall / F1 (notes §6).

Molmo draws one of many pointing templates at random and adds the ``pointing:`` style prefix
about 10% of the time; we always use the first template and no prefix, so the prompt is
deterministic. The role formatting (`` User: … Assistant:``) is the model's chat template's job.
``process`` scores F1; ``item_scores`` gives precision, recall and F1.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache

import numpy as np
from PIL import Image

from mm_assets.evaluation.benchmarks.base import Benchmark
from mm_assets.evaluation.metrics import METRIC_VERSIONS, extract_points, pointing_prf

TEMPLATE = "Point to {label}\nPlease say 'This isn't in the image.' if it is not in the image."


def doc_to_text(item: dict) -> str:
    return TEMPLATE.format(label=item["question"])


@lru_cache(maxsize=32)
def _mask(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("L")) > 0


def _prf(prediction: str, item: dict) -> tuple[float, float, float]:
    points = [(float(x), float(y)) for x, y in (item.get("points_px") or [])]
    masks = [_mask(bytes(png)) for png in (item.get("masks_png") or [])]
    return pointing_prf(prediction, points, masks, int(item["width"]), int(item["height"]))


def process(prediction: str, item: dict) -> tuple[str, float]:
    """(the points read from the output, in pixels, as JSON; F1)."""
    points = extract_points((prediction or "").strip(), int(item["width"]), int(item["height"]))
    parsed = json.dumps([[round(x, 2), round(y, 2)] for x, y in points])
    return parsed, _prf(prediction, item)[2]


def sub_scores(prediction: str, item: dict) -> dict[str, float]:
    precision, recall, f1 = _prf(prediction, item)
    return {"precision": precision, "recall": recall, "f1": f1}


BENCHMARK = Benchmark(
    name="pixmo_points",
    prompt_version="molmo@793fa387 pointing template 0, no style prefix",
    doc_to_text=doc_to_text,
    process=process,
    metric_name="pointing_f1",
    metric_version=METRIC_VERSIONS["pointing_prf"],
    sub_scores=sub_scores,
)
