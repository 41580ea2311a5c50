"""Decode, validate and normalise one Mammoth (LLaVA-format) record.

A record is `{id, image?, conversations: [{from, value}], source}`. Validation returns either
a normalised record or a rejection with a `Reason` and a human-readable detail naming what is
wrong. Problems with one unambiguous repair are repaired and the repair is recorded in the
record's `fixes` (its lineage): an `image` given as a one-element list, an image row whose
turns lack the `<image>` placeholder (inserted at the start of the first turn, as LLaVA's
converters do), a run of `<image>` placeholders for a single image that are adjacent to each
other (collapsed to one). Placeholders spread over the text, or placeholders without an
image, have no single reading and stay quarantined.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from mm_assets.sources.reasons import (FIX_COLLAPSED_IMAGE_TOKENS, FIX_INSERTED_IMAGE_TOKEN,
                                      FIX_UNWRAPPED_IMAGE_LIST, Reason)
from mm_assets.sources.tar_index import normalise_member_path

IMAGE_TOKEN = "<image>"
HUMAN, GPT = "human", "gpt"


@dataclass
class Rejection:
    reason: Reason
    detail: str


@dataclass
class Record:
    original_id: str            # the `id` as given, as a string (ids are not unique nor typed)
    id_type: str                # "str", "int", ... — kept so the original can be reproduced
    source: str
    domain: str
    image: str | None           # normalised relative path, None for text-only rows
    conversations: list[dict]   # [{"from": "human"|"gpt", "value": str}, ...]
    fixes: list[str] = field(default_factory=list)


def decode_element(data: bytes) -> Any | Rejection:
    """Bytes of one array element -> parsed JSON value, or why it cannot be parsed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(Reason.NON_UTF8, f"invalid UTF-8 byte {data[exc.start:exc.start + 1]!r} "
                                          f"at element byte {exc.start}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejection(Reason.INVALID_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return Rejection(Reason.TOO_DEEP, "nested deeper than the JSON parser allows")
    except ValueError as exc:        # e.g. an integer of more than 4300 digits
        return Rejection(Reason.INVALID_JSON, str(exc)[:200])


def _unencodable(value: str) -> int | None:
    """Index of the first lone surrogate (a `\\ud800` escape decodes to one: not a character,
    and no UTF-8 writer accepts it), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


# Letters of other scripts drawn like Latin ones (the common part of Unicode's confusables list).
_HOMOGLYPHS = str.maketrans("аеорсухіјѕԁԛԝАВЕКМНОРСТХІЈЅαοντΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
                            "aeopcyxijsdqwABEKMHOPCTXIJSaovtABEZHIKMNOPTYX")


def _skeleton(text: str) -> str:
    """What a string looks like: compatibility forms folded, invisible characters dropped,
    homoglyphs of other scripts mapped to the Latin letter they imitate."""
    folded = unicodedata.normalize("NFKC", text).translate(_HOMOGLYPHS)
    return "".join(c for c in folded if unicodedata.category(c) not in ("Cf", "Cc", "Zs") or c == " ").strip()


def _unknown_source_detail(source: str, domain_of: dict[str, str]) -> str:
    detail = f"source {source[:200]!r} is not in the source -> domain mapping"
    skeleton = _skeleton(source)
    twin = next((known for known in domain_of if _skeleton(known) == skeleton), None)
    if twin is None:
        return detail
    odd = next(((i, c) for i, c in enumerate(source) if i >= len(twin) or c != twin[i]), (len(twin), ""))
    what = f"U+{ord(odd[1]):04X} {unicodedata.name(odd[1], 'unnamed')}" if odd[1] else "a shorter name"
    return f"{detail}; it looks like {twin!r} but differs at character {odd[0]} ({what}): not accepted as it"


def _image_field(rec: dict, fixes: list[str]) -> str | None | Rejection:
    img = rec.get("image")
    if img is None:
        return None
    if isinstance(img, list):
        if len(img) == 0:
            return None
        if len(img) > 1:
            return Rejection(Reason.UNSUPPORTED_MULTI_IMAGE,
                             f"{len(img)} images; the 8 single-image/text domains take one image per row")
        img = img[0]
        fixes.append(FIX_UNWRAPPED_IMAGE_LIST)
    if not isinstance(img, str) or not img.strip():
        return Rejection(Reason.MISSING_FIELD, f"`image` must be a non-empty path string, got {img!r}")
    if ".." in img.replace("\\", "/").split("/"):
        return Rejection(Reason.UNSAFE_PATH, f"`image` {img[:200]!r} leaves the source's directory (`..`)")
    return normalise_member_path(img.strip())


# Two or more placeholders with nothing but whitespace between them.
_ADJACENT_TOKENS = re.compile(rf"{re.escape(IMAGE_TOKEN)}(?:\s*{re.escape(IMAGE_TOKEN)})+")


def _collapse_adjacent_tokens(turns: list[dict]) -> bool:
    """One image, several placeholders: collapse them to one where they form a single run
    (`<image>\n<image>\nQ`, `Q <image><image>`) in one turn. False where there is no single
    reading (placeholders apart, or in several turns); the turns are then left unchanged."""
    holders = [i for i, t in enumerate(turns) if IMAGE_TOKEN in t["value"]]
    if len(holders) != 1:
        return False
    value = turns[holders[0]]["value"]
    runs = _ADJACENT_TOKENS.findall(value)
    if len(runs) != 1 or value.count(IMAGE_TOKEN) != runs[0].count(IMAGE_TOKEN):
        return False
    turns[holders[0]] = {**turns[holders[0]], "value": _ADJACENT_TOKENS.sub(IMAGE_TOKEN, value, count=1)}
    return True


def validate_record(value: Any, domain_of: dict[str, str]) -> Record | Rejection:
    """Check one parsed element against the Mammoth schema and normalise it."""
    if not isinstance(value, dict):
        return Rejection(Reason.NOT_AN_OBJECT, f"element is a JSON {type(value).__name__}, not an object")
    source = value.get("source")
    if not isinstance(source, str) or not source:
        return Rejection(Reason.MISSING_FIELD, "`source` is missing or not a string")
    if "id" not in value or value["id"] is None:
        return Rejection(Reason.MISSING_FIELD, "`id` is missing")
    convs = value.get("conversations")
    if convs is None:
        return Rejection(Reason.MISSING_FIELD, "`conversations` is missing")
    if not isinstance(convs, list):
        return Rejection(Reason.MISSING_FIELD, f"`conversations` is a {type(convs).__name__}, not a list")
    domain = domain_of.get(source)
    if domain is None:
        return Rejection(Reason.UNKNOWN_SOURCE, _unknown_source_detail(source, domain_of))
    if not convs:
        return Rejection(Reason.EMPTY_CONVERSATION, "`conversations` is empty")
    turns = []
    for i, turn in enumerate(convs):
        if not isinstance(turn, dict) or not isinstance(turn.get("from"), str) \
                or not isinstance(turn.get("value"), str):
            return Rejection(Reason.MISSING_FIELD, f"turn {i} is not {{from: str, value: str}}: {str(turn)[:80]!r}")
        if not turn["value"].strip():
            return Rejection(Reason.EMPTY_CONVERSATION, f"turn {i} ({turn['from']}) has empty text")
        turns.append({"from": turn["from"], "value": turn["value"]})
    for i, turn in enumerate(turns):
        expected = HUMAN if i % 2 == 0 else GPT
        if turn["from"] != expected:
            return Rejection(Reason.BAD_ROLE_ORDER,
                             f"turn {i} is from {turn['from']!r}, expected {expected!r} (turns must alternate human, gpt)")
    if len(turns) % 2:
        return Rejection(Reason.BAD_ROLE_ORDER, "the conversation ends with a human turn and no answer")

    fixes: list[str] = []
    image = _image_field(value, fixes)
    if isinstance(image, Rejection):
        return image
    n_images = 0 if image is None else 1
    n_tokens = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if n_tokens != n_images:
        if n_tokens == 0 and n_images == 1:
            turns[0] = {"from": HUMAN, "value": f"{IMAGE_TOKEN}\n{turns[0]['value']}"}
            fixes.append(FIX_INSERTED_IMAGE_TOKEN)
        elif n_images == 1 and _collapse_adjacent_tokens(turns):
            fixes.append(FIX_COLLAPSED_IMAGE_TOKENS)
        else:
            return Rejection(Reason.IMAGE_TOKEN_MISMATCH,
                             f"{n_tokens} {IMAGE_TOKEN} placeholder(s) for {n_images} image(s)")
    raw_id = value["id"]
    texts = {"source": source, "id": raw_id if isinstance(raw_id, str) else "", "image": image or "",
             **{f"turn {i}": t["value"] for i, t in enumerate(turns)}}
    for where, text in texts.items():
        at = _unencodable(text)
        if at is not None:
            return Rejection(Reason.INVALID_UNICODE, f"{where}: lone surrogate U+{ord(text[at]):04X} at character "
                                                     f"{at} (an unpaired \\u escape); not representable in UTF-8")
    if isinstance(raw_id, (dict, list)):
        return Rejection(Reason.MISSING_FIELD, f"`id` is a {type(raw_id).__name__}, not a string or number")
    return Record(str(raw_id), type(raw_id).__name__, source, domain, image, turns, fixes)


def mint_sample_id(record: Record, image_sha256: str | None) -> str:
    """A stable id from content: source, original id, image bytes and conversation text.

    16 hex characters (64 bits) keep WebDataset keys short; the chance of a collision among
    12M samples is about 4e-6. Records identical in all of these get an occurrence suffix
    from the caller.
    """
    payload = json.dumps([record.source, record.original_id, record.id_type, image_sha256,
                          record.conversations], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def repeat_sample_id(sample_id: str, occurrence: int) -> str:
    """Id of the `occurrence`-th (1-based beyond the first) identical copy of a record."""
    return hashlib.sha256(f"{sample_id}#{occurrence}".encode()).hexdigest()[:16]
