"""Turn planned units into records and image bytes (runs in worker processes)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from . import conversations as conv_mod
from . import eval_sets
from .canvas import Sizing, decode, encode
from .families import FAMILIES, Drawn
from .instructions import instruct
from .plan import Unit
from .rng import rng_for


@dataclass
class Rendered:
    ordinal: int
    record: dict
    image: bytes | None
    lq_applied: str | None
    content: list[dict] | None = None     # every question/answer the drawing supports (`image_content`)


def image_content(drawn: Drawn) -> list[dict]:
    """Every question the family can answer from what it drew, with the answer in its short form —
    the record uses the first few. What a reader who sees the image perfectly could write about
    it (MM-GEN's `drawn` generator reads it); it says nothing about planted defects."""
    return [{"question": qa.question, "answer": qa.short or qa.answer, "form": qa.form, "tag": qa.tag}
            for qa in drawn.qas]


def _draw(domain: str, index: int, family: str, seed: int, sizing: Sizing, stream: str):
    fam = FAMILIES[family]
    drawn = fam.draw(rng_for(seed, stream, domain, index), sizing)
    crng = rng_for(seed, stream, domain, index, "conv")
    qas = drawn.qas[: conv_mod.n_turns(crng, len(drawn.qas))]
    qas = instruct(family, domain, qas, drawn.spec, rng_for(seed, stream, domain, index, "instr"))
    conv = conv_mod.build(qas, fam.fmt is not None, crng)
    image = None if drawn.image is None else encode(drawn.image, fam.fmt, quality=crng.randint(78, 95))
    return image, conv, qas, drawn


def draw_base(domain: str, index: int, family: str, seed: int, sizing: Sizing, stream: str = "train"):
    """Image bytes, conversation and the QAs it was built from, for one base draw."""
    return _draw(domain, index, family, seed, sizing, stream)[:3]


def _strip_image_token(conv: list[dict]) -> list[dict]:
    conv = [dict(t) for t in conv]
    v = conv[0]["value"]
    conv[0]["value"] = v.replace(conv_mod.IMAGE_TOKEN + "\n", "", 1) if v.startswith(conv_mod.IMAGE_TOKEN) \
        else v.replace("\n" + conv_mod.IMAGE_TOKEN, "", 1)
    return conv


def _near_duplicate_image(image: bytes, fmt: str, kind: str, family: str, rng) -> bytes:
    if kind in ("exact_copy", "reworded_question"):
        return image
    img = decode(image)
    if kind == "reencoded_jpeg":
        return encode(img, "JPEG", quality=rng.randint(35, 70))
    w, h = img.size
    # crops shift the point coordinates of pointing answers, so those rows are only resized
    if family != "detection_points" and rng.random() < 0.6:
        cw, ch = int(w * rng.uniform(0.01, 0.05)), int(h * rng.uniform(0.01, 0.05))
        left, top = rng.randint(0, cw), rng.randint(0, ch)
        img = img.crop((left, top, w - (cw - left), h - (ch - top)))
    else:
        s = rng.choice([rng.uniform(0.75, 0.92), rng.uniform(1.08, 1.25)])
        img = img.resize((max(16, round(w * s)), max(16, round(h * s))), Image.BICUBIC)
    return encode(img, fmt, quality=rng.randint(80, 95))


def render_unit(u: Unit, seed: int, sizing: Sizing) -> Rendered:
    fam = FAMILIES[u.family]
    lq, content = None, None
    if u.kind == "leak":
        item = eval_sets.eval_item(u.bench, u.index, seed)
        image = item.image
        if u.reencode:
            image = encode(decode(image), "JPEG", quality=rng_for(seed, "leak", u.bench, u.index).randint(70, 90))
        conv = conv_mod.build([conv_mod.QA(item.question, item.answer)], True)
    else:
        image, conv, qas, drawn = _draw(u.domain, u.index, u.family, seed, sizing, "train")
        if image is not None:
            content = image_content(drawn)
        if u.kind == "dup":
            rng = rng_for(seed, "dup", u.domain, u.index, u.dup_no)
            if u.dup_kind in ("reworded_question", "text_reworded"):
                conv = conv_mod.reword_first_question(conv, rng, text_only=image is None)
            if image is not None:
                image = _near_duplicate_image(image, fam.fmt, u.dup_kind, u.family, rng)
        else:
            if u.lq:
                conv, lq = conv_mod.corrupt(conv, qas, u.lq, rng_for(seed, "train", u.domain, u.index, "lq"),
                                            image is not None)
            if u.no_image_token:
                conv = _strip_image_token(conv)
    record = {"id": u.id}
    if u.image is not None:
        record["image"] = u.image
    record["conversations"] = conv
    record["source"] = fam.source
    return Rendered(u.ordinal, record, image, lq, content)


def render_chunk(args: tuple[list[Unit], int, Sizing]) -> list[Rendered]:
    units, seed, sizing = args
    return [render_unit(u, seed, sizing) for u in units]
