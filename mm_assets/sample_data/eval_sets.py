"""Benchmark look-alikes written in the native columns of their public parquet exports.

Eval images come from the same family drawers as training, from RNG streams keyed "eval",
so they never coincide with training draws (except the planted leaks, which copy them).

Each benchmark also has a *reference* split (`<eval dir>/reference/<benchmark>.parquet`, same
native columns), drawn from RNG streams keyed "reference": the small labelled split that
targeted synthesis (MM-GEN) describes a task by, as a benchmark's train or validation split
would be. It is never scored and never leaked into training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .canvas import Sizing, encode, shape_mask
from .families import chart, detection, general, ocr
from .rng import rng_for
from .writer import atomic_path, write_parquet

BENCHMARKS = ("docvqa", "chartqa", "countbench", "realworldqa", "pixmo_points")
BENCH_DOMAIN = {"docvqa": "ocr", "chartqa": "chart", "countbench": "detection",
                "realworldqa": "general", "pixmo_points": "detection"}
_NATIVE_FMT = {"docvqa": "PNG", "chartqa": "PNG", "countbench": "JPEG", "realworldqa": "JPEG",
               "pixmo_points": "JPEG"}
_CHART_FAMILIES = ("chart_bar", "chart_line", "chart_pie")
SPLITS = ("eval", "reference")
REFERENCE_DIR = "reference"
# reference DocVQA question ids live in their own range, so no id names items of both splits
_REFERENCE_QID_OFFSET = 1_000_000

EVAL_SIZING = Sizing(192, 448)
DOC_SIZING = Sizing(320, 560)
PIXMO_SIZING = Sizing(128, 256)

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMAS = {
    "docvqa": pa.schema([("questionId", pa.int64()), ("question", pa.string()),
                         ("question_types", pa.list_(pa.string())), ("image", IMAGE_TYPE),
                         ("docId", pa.int64()), ("ucsf_document_id", pa.string()),
                         ("ucsf_document_page_no", pa.string()), ("answers", pa.list_(pa.string())),
                         ("data_split", pa.string())]),
    "chartqa": pa.schema([("type", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                          ("image", IMAGE_TYPE)]),
    "countbench": pa.schema([("image", IMAGE_TYPE), ("text", pa.string()), ("question", pa.string()),
                             ("number", pa.int32())]),
    "realworldqa": pa.schema([("image", IMAGE_TYPE), ("question", pa.string()), ("answer", pa.string())]),
    "pixmo_points": pa.schema([("image_url", pa.string()), ("image_sha256", pa.string()),
                               ("label", pa.string()),
                               ("points", pa.list_(pa.struct([("x", pa.float64()), ("y", pa.float64())]))),
                               ("masks", pa.list_(pa.list_(pa.list_(pa.bool_()))))]),
}


@dataclass
class EvalItem:
    row: dict              # native columns (pixmo masks kept as a numpy array)
    image: bytes
    fmt: str
    question: str          # how the item reads as a training record
    answer: str


def bench_family(bench: str, i: int) -> str:
    return {"docvqa": "ocr_docs", "countbench": "detection_count", "realworldqa": "general_shapes",
            "pixmo_points": "detection_points"}.get(bench) or _CHART_FAMILIES[i % 3]


def native_fmt(bench: str) -> str:
    return _NATIVE_FMT[bench]


def pixmo_negative(i: int) -> bool:
    return i % 7 == 3


def can_leak(bench: str, i: int) -> bool:
    return not (bench == "pixmo_points" and pixmo_negative(i))


def docvqa_ids(seed: int, i: int, split: str = "eval") -> tuple[int, int]:
    """(questionId, docId); two consecutive questions share one document."""
    offset = rng_for(seed, split, "docvqa", "ids").randrange(10_000)
    base = _REFERENCE_QID_OFFSET if split == "reference" else 0
    return base + 49_000 + offset + 3 * i + i % 3, base + 14_000 + offset + 5 * (i // 2)


def item_id(bench: str, i: int, seed: int) -> int:
    """The id a report uses for an item: DocVQA's questionId, else the row index."""
    return docvqa_ids(seed, i)[0] if bench == "docvqa" else i


def eval_item(bench: str, i: int, seed: int, split: str = "eval") -> EvalItem:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = rng_for(seed, split, bench, i)
    fmt = _NATIVE_FMT[bench]
    if bench == "docvqa":
        qid, doc_id = docvqa_ids(seed, i, split)
        doc_rng = rng_for(seed, split, "docvqa", "doc", i // 2)
        drawn = ocr.draw_document(doc_rng, DOC_SIZING)
        qa = drawn.qas[i % 2]
        ucsf = "".join(doc_rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(4)) + f"{doc_rng.randrange(10000):04d}"
        page = str(doc_rng.randint(1, 4))
        image = encode(drawn.image, fmt)
        golds = list(dict.fromkeys(qa.golds or (qa.answer,)))[:3]
        row = {"questionId": qid, "question": qa.question, "question_types": [qa.tag or "others"],
               "image": {"bytes": image, "path": f"{ucsf}_{page}.png"}, "docId": doc_id,
               "ucsf_document_id": ucsf, "ucsf_document_page_no": page, "answers": golds,
               "data_split": "validation"}
        return EvalItem(row, image, fmt, qa.question, golds[0])
    if bench == "chartqa":
        drawn = chart.CHART_DRAWERS[_CHART_FAMILIES[i % 3].split("_")[1]](rng, EVAL_SIZING)
        qa = next((q for q in drawn.qas if len(q.answer.split()) <= 2), drawn.qas[0])
        image = encode(drawn.image, fmt)
        row = {"type": "human_test" if i % 2 == 0 else "augmented_test", "question": qa.question,
               "answer": qa.answer, "image": {"bytes": image, "path": f"chartqa_{i:05d}.png"}}
        return EvalItem(row, image, fmt, qa.question, qa.answer)
    if bench == "countbench":
        number = rng.randint(2, 10)
        drawn = detection.draw_count(rng, EVAL_SIZING, count=number)
        spec = drawn.spec
        question = f"How many {spec['plural']} are there in the image?"
        image = encode(drawn.image, fmt, quality=rng.randint(80, 95))
        row = {"image": {"bytes": image, "path": f"countbench_{i:05d}.jpg"},
               "text": detection.count_caption(spec, rng), "question": question, "number": number}
        return EvalItem(row, image, fmt, question, str(number))
    if bench == "realworldqa":
        drawn, question, answer = general.realworld_item(rng, EVAL_SIZING)
        image = encode(drawn.image, fmt, quality=rng.randint(80, 95))
        row = {"image": {"bytes": image, "path": f"realworldqa_{i:05d}.jpg"}, "question": question,
               "answer": answer}
        return EvalItem(row, image, fmt, question, answer)
    if bench == "pixmo_points":
        count = 0 if pixmo_negative(i) else rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10])
        drawn = detection.draw_points(rng, PIXMO_SIZING, count=count)
        spec = drawn.spec
        w, h = spec["w"], spec["h"]
        image = encode(drawn.image, fmt, quality=rng.randint(80, 95))
        sha = hashlib.sha256(image).hexdigest()
        masks = np.stack([shape_mask(o, w, h) for o in spec["targets"]]) if spec["targets"] \
            else np.zeros((1, h, w), dtype=bool)
        row = {"image_url": f"pixmo_points_images/{sha}.jpg", "image_sha256": sha,
               "label": spec["label"],
               "points": [{"x": round(x, 2), "y": round(y, 2)} for x, y in spec["points"]],
               "masks": masks}
        return EvalItem(row, image, fmt, drawn.qas[0].question, drawn.qas[0].answer)
    raise ValueError(bench)


def _masks_array(masks: list[np.ndarray]) -> pa.Array:
    """list<list<list<bool>>> from per-row (k, H, W) boolean arrays, without Python bool lists."""
    flat = pa.array(np.concatenate([m.reshape(-1) for m in masks]), type=pa.bool_())
    row_lens, mask_lens, line_lens = [], [], []
    for m in masks:
        k, h, w = m.shape
        row_lens.append(k)
        mask_lens.extend([h] * k)
        line_lens.extend([w] * (k * h))

    def offsets(lengths):
        return pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32))

    lines = pa.ListArray.from_arrays(offsets(line_lens), flat)
    per_mask = pa.ListArray.from_arrays(offsets(mask_lens), lines)
    return pa.ListArray.from_arrays(offsets(row_lens), per_mask)


def reference_items(eval_items: int) -> int:
    """The size of a benchmark's reference split: half the eval set, at least 20."""
    return max(20, eval_items // 2)


def write_eval_set(bench: str, n_items: int, seed: int, eval_dir: str | Path, split: str = "eval") -> dict:
    eval_dir = Path(eval_dir) / (REFERENCE_DIR if split == "reference" else "")
    items = [eval_item(bench, i, seed, split) for i in range(n_items)]
    schema = SCHEMAS[bench]
    rows = [it.row for it in items]
    columns = {}
    for name in schema.names:
        if name == "masks":
            columns[name] = _masks_array([r["masks"] for r in rows])
        else:
            columns[name] = pa.array([r[name] for r in rows], type=schema.field(name).type)
    table = pa.Table.from_pydict(columns, schema=schema)
    if bench == "pixmo_points":
        img_dir = eval_dir / "pixmo_points_images"
        img_dir.mkdir(parents=True, exist_ok=True)
        wanted = set()
        for it in items:
            target = eval_dir / it.row["image_url"]
            wanted.add(target.name)
            with atomic_path(target) as tmp:
                tmp.write_bytes(it.image)
        for stale in img_dir.glob("*.jpg"):
            if stale.name not in wanted:
                stale.unlink()
    path = eval_dir / f"{bench}.parquet"
    write_parquet(table, path)
    return {"benchmark": bench, "split": split, "items": n_items, "path": str(path)}
