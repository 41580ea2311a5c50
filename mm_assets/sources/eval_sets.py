"""Eval sets: the public exports' native fields, cached in one uniform schema.

Each benchmark's export is a Parquet file in the fields of its public release (the HF dataset
the reference harness uses), images as a `{bytes, path}` struct, except PixMo-Points, whose
export carries `image_url` + `image_sha256` and whose points are percent of width/height.
Rows that cannot be used (no image, hash mismatch, bad points) are quarantined with a reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import polars as pl
from PIL import Image

from mm_assets.storage import Storage, file_storage
from mm_assets.taxonomy import BENCHMARKS

NATIVE_FIELDS = {
    "docvqa": ("questionId", "question", "question_types", "image", "docId", "ucsf_document_id",
               "ucsf_document_page_no", "answers", "data_split"),
    "chartqa": ("type", "question", "answer", "image"),
    "countbench": ("image", "text", "question", "number"),
    "realworldqa": ("image", "question", "answer"),
    "pixmo_points": ("image_url", "image_sha256", "label", "points", "masks"),
}

EVAL_SCHEMA = {
    "item_id": pl.String, "benchmark": pl.String, "question": pl.String,
    "answers": pl.List(pl.String), "answer_type": pl.String, "choices": pl.List(pl.String),
    "number": pl.Int64, "points_px": pl.List(pl.List(pl.Float64)), "masks_png": pl.List(pl.Binary),
    "image": pl.Binary, "image_sha256": pl.String, "width": pl.Int32, "height": pl.Int32,
    "native": pl.String,
}
EVAL_QUARANTINE_SCHEMA = {"benchmark": pl.String, "row": pl.Int64, "item_id": pl.String,
                          "reason": pl.String, "detail": pl.String}

_OPTION = re.compile(r"^\s*([A-Z])[.:)]\s+(.*\S)\s*$")


class EvalRowError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _image_from_struct(value) -> bytes:
    if isinstance(value, dict):
        value = value.get("bytes")
    if not value:
        raise EvalRowError("missing_image", "the image struct has no bytes")
    return bytes(value)


def _size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.size
    except Exception as exc:
        raise EvalRowError("corrupt_image", f"{type(exc).__name__}: {exc}") from exc


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def parse_choices(question: str) -> list[str]:
    """Option lines 'A. text' of a multiple-choice question, in order."""
    return [m.group(2) for line in question.splitlines() if (m := _OPTION.match(line))]


def _read_uri(url: str) -> bytes:
    st, name = file_storage(url)
    return st.read_bytes(name)


def _row(benchmark: str, i: int, r: dict, export_dir: Storage) -> dict:
    base = {"benchmark": benchmark, "choices": None, "number": None, "points_px": None, "masks_png": None}
    if benchmark == "docvqa":
        image = _image_from_struct(r["image"])
        answers = [str(a) for a in (r["answers"] or [])]
        item = dict(base, item_id=str(r["questionId"]), question=r["question"], answers=answers,
                    answer_type="text")
    elif benchmark == "chartqa":
        image = _image_from_struct(r["image"])
        item = dict(base, item_id=f"chartqa-{i:05d}", question=r["question"], answers=[str(r["answer"])],
                    answer_type="text")
    elif benchmark == "countbench":
        image = _image_from_struct(r["image"])
        item = dict(base, item_id=f"countbench-{i:05d}", question=r["question"].strip(),
                    answers=[str(int(r["number"]))], answer_type="number", number=int(r["number"]))
    elif benchmark == "realworldqa":
        image = _image_from_struct(r["image"])
        choices = parse_choices(r["question"])
        item = dict(base, item_id=f"realworldqa-{i:05d}", question=r["question"], answers=[str(r["answer"])],
                    answer_type="choice" if choices else "text", choices=choices or None)
    elif benchmark == "pixmo_points":
        url = r["image_url"]
        try:
            image = export_dir.read_bytes(url) if "://" not in url else _read_uri(url)
        except FileNotFoundError as exc:
            raise EvalRowError("missing_image", f"image_url {url!r} not found") from exc
        digest = hashlib.sha256(image).hexdigest()
        if digest != r["image_sha256"]:
            raise EvalRowError("image_hash_mismatch", f"{url!r} hashes to {digest[:12]}…, export says {r['image_sha256'][:12]}…")
        masks = [np.asarray(m, dtype=bool) for m in (r["masks"] or [])]
        if not masks:
            raise EvalRowError("bad_points", "no masks (rows without points carry one all-false mask)")
        h, w = masks[0].shape
        points = r["points"] or []
        if points and len(points) != len(masks):
            raise EvalRowError("bad_points", f"{len(points)} points but {len(masks)} masks")
        # Points are percent of width/height; convert with the mask size, as Molmo2 does.
        pts = [[float(p["x"]) * w / 100.0, float(p["y"]) * h / 100.0] for p in points]
        item = dict(base, item_id=f"pixmo_points-{digest[:12]}-{i:05d}", question=r["label"],
                    answers=[r["label"]], answer_type="points", points_px=pts,
                    masks_png=[_png(m) for m in masks])
    else:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {BENCHMARKS}")
    width, height = _size(image)
    native = {k: v for k, v in r.items() if k not in ("image", "masks")}
    return dict(item, image=image, image_sha256=hashlib.sha256(image).hexdigest(), width=width,
                height=height, native=json.dumps(native, default=str, ensure_ascii=False))


def load_eval_set(export_dir: Storage, benchmark: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read `<benchmark>.parquet` from an export directory into (items, quarantine)."""
    rel = f"{benchmark}.parquet"
    native = export_dir.read_parquet(rel)
    missing = [c for c in NATIVE_FIELDS[benchmark] if c not in native.columns]
    if missing:
        raise ValueError(f"{export_dir.uri(rel)}: missing native columns {missing}; "
                         f"expected {list(NATIVE_FIELDS[benchmark])}")
    rows, bad = [], []
    for i, r in enumerate(native.iter_rows(named=True)):
        try:
            rows.append(_row(benchmark, i, r, export_dir))
        except EvalRowError as exc:
            bad.append({"benchmark": benchmark, "row": i, "item_id": None, "reason": exc.reason,
                        "detail": exc.detail})
    items = pl.DataFrame(rows, schema=EVAL_SCHEMA)
    dup = items.filter(pl.col("item_id").is_duplicated())
    if dup.height:
        raise ValueError(f"{export_dir.uri(rel)}: duplicate item ids {dup['item_id'].unique().to_list()[:5]}")
    return items, pl.DataFrame(bad, schema=EVAL_QUARANTINE_SCHEMA)
