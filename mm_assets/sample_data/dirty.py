"""A small dirty source: good records plus at least two planted records per malformed kind.

Each planted record has exactly one defect, so its expected quarantine reason is unambiguous.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from pathlib import Path

from mm_assets.sources.reasons import (FIX_COLLAPSED_IMAGE_TOKENS, FIX_INSERTED_IMAGE_TOKEN,
                                      FIX_UNWRAPPED_IMAGE_LIST, Reason)

from .canvas import Sizing
from .conversations import IMAGE_TOKEN
from .families import FAMILIES
from .render import draw_base
from .rng import rng_for
from .writer import atomic_path, dumps, tar_gz_bytes, write_tar_gz

SIZING = Sizing(160, 320)
OK = "ok"
_GOOD_FAMILIES = ("chart_bar", "general_shapes", "ocr_words", "caption_scene", "domain_cycle",
                  "code_math_arith", "detection_count", "chart_pie", "ocr_lines", "general_tiles",
                  "domain_parts", "code_math_geometry", "detection_points", "chart_line",
                  "language_word_problems", "language_text_tasks", "ocr_docs")


def _dir(family: str) -> str:
    return "dirty_src/" + FAMILIES[family].directory.removeprefix("gen_")


class _Builder:
    def __init__(self, seed: int):
        self.seed = seed
        self.rng = rng_for(seed, "dirty", "layout")
        self.elements: list[tuple[bytes, object, str, list[str]]] = []   # (bytes, id, expected, fixes)
        self.shard0: list[tuple[str, bytes]] = []
        self.counters: dict[str, int] = {}
        self.n = 0

    def next_id(self) -> int | str:
        self.n += 1
        return self.n if self.n % 3 == 0 else f"dirty_{self.n:04d}"

    def path(self, family: str, ext: str) -> str:
        k = self.counters.get(family, 0)
        self.counters[family] = k + 1
        return f"{_dir(family)}/{k:05d}.{ext}"

    def draw(self, family: str, with_image_in_tar: bool = True):
        fam = FAMILIES[family]
        i = self.n
        image, conv, _ = draw_base(fam.domain, i, family, self.seed, SIZING, stream="dirty")
        rec: dict = {"id": self.next_id()}
        if image is not None:
            rec["image"] = self.path(family, "jpg" if fam.fmt == "JPEG" else "png")
            if with_image_in_tar:
                self.shard0.append((rec["image"], image))
        rec["conversations"] = conv
        rec["source"] = fam.source
        return rec, image

    def add(self, element, expected: str, rid=None, fixes: tuple[str, ...] = ()) -> None:
        if isinstance(element, dict):
            rid = element.get("id")
            element = dumps(element).encode("utf-8")
        self.elements.append((element, rid, expected, list(fixes)))


def _lost_and_kept(gz_bytes: bytes, cut: int) -> tuple[list[str], list[str]]:
    """Members wholly after the cut point, and members that survive it with margin."""
    raw = gzip.decompress(gz_bytes)
    available = len(zlib.decompressobj(31).decompress(gz_bytes[:cut]))
    lost, kept = [], []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            if m.offset >= available:
                lost.append(m.name)
            elif m.offset_data + m.size + 4096 <= available:
                kept.append(m.name)
    return lost, kept


def write_dirty(dirty_dir: str | Path, seed: int) -> dict:
    dirty_dir = Path(dirty_dir)
    b = _Builder(seed)
    for family in _GOOD_FAMILIES:
        rec, _ = b.draw(family)
        b.add(rec, OK)

    # fixable, each with one unambiguous repair that ingest records in the sample's fixes -> ok
    rec, _ = b.draw("chart_bar")        # no <image> placeholder in an image row
    rec["conversations"][0]["value"] = rec["conversations"][0]["value"].replace(IMAGE_TOKEN, "").strip()
    b.add(rec, OK, fixes=(FIX_INSERTED_IMAGE_TOKEN,))
    rec, _ = b.draw("general_shapes")   # the placeholder repeated at the start of the turn
    first = rec["conversations"][0]
    first["value"] = IMAGE_TOKEN + "\n" + IMAGE_TOKEN + "\n" + first["value"].replace(IMAGE_TOKEN, "").strip()
    b.add(rec, OK, fixes=(FIX_COLLAPSED_IMAGE_TOKENS,))
    rec, _ = b.draw("ocr_words")        # the image as a one-element list, placeholders doubled at the end
    rec["image"] = [rec["image"]]
    first = rec["conversations"][0]
    first["value"] = first["value"].replace(IMAGE_TOKEN, "").strip() + " " + IMAGE_TOKEN + IMAGE_TOKEN
    b.add(rec, OK, fixes=(FIX_UNWRAPPED_IMAGE_LIST, FIX_COLLAPSED_IMAGE_TOKENS))

    # invalid_json: balanced brackets, broken syntax
    rec, _ = b.draw("language_text_tasks")
    b.add(dumps(rec)[:-1].encode() + b", }", Reason.INVALID_JSON, rec["id"])
    rec, _ = b.draw("language_word_problems")
    text = dumps(rec)
    b.add(text.replace('"conversations":', "conversations:", 1).encode(), Reason.INVALID_JSON, rec["id"])
    rid = b.next_id()
    single = (f"{{'id': '{rid}', 'conversations': [{{'from': 'human', 'value': 'What is two plus two?'}}, "
              f"{{'from': 'gpt', 'value': 'Four.'}}], 'source': 'gen_language_text_tasks'}}")
    b.add(single.encode(), Reason.INVALID_JSON, rid)

    # non_utf8: raw invalid bytes inside a string
    for bad in (b"\xff\xfe", b"caf\xe9"):
        rec, _ = b.draw("ocr_words")
        rec["conversations"][1]["value"] = "@@BAD@@"
        b.add(dumps(rec).encode().replace(b"@@BAD@@", bad), Reason.NON_UTF8, rec["id"])

    # empty_conversation
    rec, _ = b.draw("language_word_problems")
    rec["conversations"] = []
    b.add(rec, Reason.EMPTY_CONVERSATION)
    rec, _ = b.draw("chart_pie")
    rec["conversations"] = rec["conversations"][:2]
    rec["conversations"][1]["value"] = ""
    b.add(rec, Reason.EMPTY_CONVERSATION)

    # bad_role_order
    rec, _ = b.draw("language_text_tasks")
    t = rec["conversations"][:2]
    rec["conversations"] = [t[1], t[0]]
    b.add(rec, Reason.BAD_ROLE_ORDER)
    rec, _ = b.draw("general_shapes")
    t = rec["conversations"][:2]
    rec["conversations"] = [t[0], {"from": "human", "value": "Please answer quickly."}, t[1]]
    b.add(rec, Reason.BAD_ROLE_ORDER)

    # image_token_mismatch (unfixable: no single reading)
    rec, _ = b.draw("detection_count")  # one image, placeholders apart: which one is the image?
    first = rec["conversations"][0]
    first["value"] = IMAGE_TOKEN + "\n" + first["value"].replace(IMAGE_TOKEN, "").strip() + "\n" + IMAGE_TOKEN
    b.add(rec, Reason.IMAGE_TOKEN_MISMATCH)
    rec, _ = b.draw("language_word_problems")
    rec["conversations"][0]["value"] = IMAGE_TOKEN + "\n" + rec["conversations"][0]["value"]
    b.add(rec, Reason.IMAGE_TOKEN_MISMATCH)

    # missing_image: in a directory that exists in shard_0000, but no such member anywhere
    for family in ("chart_bar", "general_shapes"):
        rec, _ = b.draw(family, with_image_in_tar=False)
        b.add(rec, Reason.MISSING_IMAGE)

    # corrupt_image: garbage bytes; a JPEG cut in half
    rec, _ = b.draw("caption_scene", with_image_in_tar=False)
    b.shard0.append((rec["image"], bytes(b.rng.getrandbits(8) for _ in range(3000))))
    b.add(rec, Reason.CORRUPT_IMAGE)
    rec, image = b.draw("detection_count", with_image_in_tar=False)
    b.shard0.append((rec["image"], image[: len(image) // 2]))
    b.add(rec, Reason.CORRUPT_IMAGE)

    # missing_field
    rec, _ = b.draw("language_text_tasks")
    del rec["conversations"]
    b.add(rec, Reason.MISSING_FIELD)
    rec, _ = b.draw("language_word_problems")
    rec["conversations"] = "human: what is 3 + 4? gpt: 7"
    b.add(rec, Reason.MISSING_FIELD)

    # unknown_source
    for source in ("laion_mystery_v2", "gen_unlisted_source"):
        rec, _ = b.draw("ocr_lines")
        rec["source"] = source
        b.add(rec, Reason.UNKNOWN_SOURCE)

    # not_an_object
    b.add(b'"this element is a bare string"', Reason.NOT_AN_OBJECT, None)
    b.add(b"null", Reason.NOT_AN_OBJECT, None)

    # truncated_tarball: shard_0001 cut at half its size
    trunc_members = []
    for k in range(20):
        image, _, _ = draw_base("general", 10_000 + k, "general_shapes", seed, Sizing(256, 320), stream="dirty")
        trunc_members.append((f"dirty_trunc/{k:05d}.jpg", image))
    gz = tar_gz_bytes(trunc_members)
    cut = len(gz) // 2
    lost, kept = _lost_and_kept(gz, cut)
    for name in lost[-3:]:
        rec, _ = b.draw("general_shapes", with_image_in_tar=False)
        rec["image"] = name
        b.add(rec, Reason.TRUNCATED_TARBALL)
    rec, _ = b.draw("general_shapes", with_image_in_tar=False)
    rec["image"] = kept[0]          # survived the cut: a readable image
    b.add(rec, OK)

    order = list(range(len(b.elements)))
    b.rng.shuffle(order)
    elements = [b.elements[i] for i in order]
    with atomic_path(dirty_dir / "mammoth_si.json") as tmp:
        tmp.write_bytes(b"[\n" + b",\n".join(e for e, _, _, _ in elements) + b"\n]\n")
    write_tar_gz(dirty_dir / "images" / "shard_0000.tar.gz", b.shard0)
    with atomic_path(dirty_dir / "images" / "shard_0001.tar.gz") as tmp:
        tmp.write_bytes(gz[:cut])
    records = [{"ordinal": i, "id": rid, "expected": str(expected), "fixes": fixes}
               for i, (_, rid, expected, fixes) in enumerate(elements)]
    good = sum(r["expected"] == OK for r in records)
    return {"records": records, "good": good, "malformed": len(records) - good,
            "truncated_tarball": "dirty/images/shard_0001.tar.gz",
            "truncated_lost_members": lost, "truncated_kept_members": kept}
