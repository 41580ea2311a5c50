"""Record validation: each malformed shape gets its specific reason; fixable ones are fixed."""

import pytest

from mm_assets.sources.reasons import (FIX_COLLAPSED_IMAGE_TOKENS, FIX_INSERTED_IMAGE_TOKEN,
                                      FIX_UNWRAPPED_IMAGE_LIST, Reason)
from mm_assets.sources.records import Record, Rejection, decode_element, mint_sample_id, validate_record

DOMAINS = {"gen_chart_bar": "chart", "gen_language": "language"}


def rec(**kw):
    base = {"id": 1, "image": "a/b.jpg", "source": "gen_chart_bar",
            "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}]}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize("value,reason", [
    ("just a string", Reason.NOT_AN_OBJECT),
    (rec(source=...), Reason.MISSING_FIELD),
    (rec(id=...), Reason.MISSING_FIELD),
    (rec(conversations=...), Reason.MISSING_FIELD),
    (rec(conversations="human: hi"), Reason.MISSING_FIELD),
    (rec(conversations=[{"from": "human"}]), Reason.MISSING_FIELD),
    (rec(source="not_mapped"), Reason.UNKNOWN_SOURCE),
    (rec(conversations=[]), Reason.EMPTY_CONVERSATION),
    (rec(conversations=[{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "  "}]), Reason.EMPTY_CONVERSATION),
    (rec(conversations=[{"from": "gpt", "value": "A"}, {"from": "human", "value": "<image>Q"}]), Reason.BAD_ROLE_ORDER),
    (rec(conversations=[{"from": "human", "value": "<image>Q"}, {"from": "human", "value": "Q2"}]), Reason.BAD_ROLE_ORDER),
    (rec(conversations=[{"from": "human", "value": "<image>Q"}]), Reason.BAD_ROLE_ORDER),
    (rec(conversations=[{"from": "human", "value": "<image>Q<image>"}, {"from": "gpt", "value": "A"}]), Reason.IMAGE_TOKEN_MISMATCH),
    (rec(conversations=[{"from": "human", "value": "<image> Q <image><image>"}, {"from": "gpt", "value": "A"}]),
     Reason.IMAGE_TOKEN_MISMATCH),
    (rec(conversations=[{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"},
                        {"from": "human", "value": "<image>\nQ2"}, {"from": "gpt", "value": "B"}]),
     Reason.IMAGE_TOKEN_MISMATCH),
    (rec(image=["a.jpg"], conversations=[{"from": "human", "value": "<image>Q<image>"}, {"from": "gpt", "value": "A"}]),
     Reason.IMAGE_TOKEN_MISMATCH),
    (rec(image=..., source="gen_language"), Reason.IMAGE_TOKEN_MISMATCH),
    (rec(image=["a.jpg", "b.jpg"]), Reason.UNSUPPORTED_MULTI_IMAGE),
    (rec(image=""), Reason.MISSING_FIELD),
])
def test_rejections_name_the_reason(value, reason):
    out = validate_record(value, DOMAINS)
    assert isinstance(out, Rejection), out
    assert out.reason == reason
    assert out.detail


def test_missing_image_token_is_inserted_and_recorded():
    out = validate_record(rec(conversations=[{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A"}]), DOMAINS)
    assert isinstance(out, Record)
    assert out.conversations[0]["value"] == "<image>\nQ?"
    assert out.fixes == [FIX_INSERTED_IMAGE_TOKEN]


@pytest.mark.parametrize("value,turn0,fixes", [
    (rec(conversations=[{"from": "human", "value": "<image>\n<image>\nQ?"}, {"from": "gpt", "value": "A"}]),
     "<image>\nQ?", [FIX_COLLAPSED_IMAGE_TOKENS]),
    (rec(conversations=[{"from": "human", "value": "Q? <image> <image><image>"}, {"from": "gpt", "value": "A"}]),
     "Q? <image>", [FIX_COLLAPSED_IMAGE_TOKENS]),
    (rec(image=["a/b.jpg"]), "<image>\nQ?", [FIX_UNWRAPPED_IMAGE_LIST]),
    (rec(image=["a/b.jpg"], conversations=[{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A"}]),
     "<image>\nQ?", [FIX_UNWRAPPED_IMAGE_LIST, FIX_INSERTED_IMAGE_TOKEN]),
])
def test_repairs_with_one_reading_are_made_and_recorded(value, turn0, fixes):
    out = validate_record(value, DOMAINS)
    assert isinstance(out, Record), out
    assert out.image == "a/b.jpg"
    assert out.conversations[0]["value"] == turn0
    assert out.fixes == fixes


def test_text_only_and_int_ids():
    out = validate_record(rec(image=..., source="gen_language", conversations=[
        {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]), DOMAINS)
    assert isinstance(out, Record) and out.image is None and out.domain == "language"
    assert (out.original_id, out.id_type) == ("1", "int")


def test_decode_element_reasons():
    assert decode_element(b'{"a": 1,}').reason == Reason.INVALID_JSON
    assert decode_element(b'{"a": "\xff"}').reason == Reason.NON_UTF8
    assert decode_element(b'{"a": 1}') == {"a": 1}


def test_sample_id_is_stable_and_content_sensitive():
    a = validate_record(rec(), DOMAINS)
    b = validate_record(rec(), DOMAINS)
    assert mint_sample_id(a, "h1") == mint_sample_id(b, "h1")
    assert mint_sample_id(a, "h1") != mint_sample_id(a, "h2")
    c = validate_record(rec(id="1"), DOMAINS)  # same id text, different type
    assert mint_sample_id(a, "h1") != mint_sample_id(c, "h1")
    assert len(mint_sample_id(a, "h1")) == 16


@pytest.mark.parametrize("source, what", [
    ("gen_ch\u0430rt_bar", "U+0430 CYRILLIC SMALL LETTER A"),      # Cyrillic а
    ("gen_chart_bar\u200b", "U+200B ZERO WIDTH SPACE"),
    ("ｇｅｎ_chart_bar", "U+FF47 FULLWIDTH LATIN SMALL LETTER G"),
])
def test_a_lookalike_source_is_quarantined_and_the_detail_names_the_character(source, what):
    out = validate_record(rec(source=source), DOMAINS)
    assert isinstance(out, Rejection) and out.reason == Reason.UNKNOWN_SOURCE
    assert "looks like 'gen_chart_bar'" in out.detail and what in out.detail
