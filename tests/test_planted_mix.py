"""The planted-defect mix as generator parameters, the study scale, and the instruction helpers."""

from __future__ import annotations

import collections
import json
import random

import pytest

from mm_assets.sample_data import generate_sample_data
from mm_assets.sample_data.conversations import QA, REFUSALS, build, corrupt, reword_first_question
from mm_assets.sample_data.instructions import (COUNTBENCH_PREFIX, DOCVQA_SUFFIX, REALWORLD_MC_SUFFIX,
                                                split_instruction)
from mm_assets.sample_data.plan import build_plan
from mm_assets.sample_data.scales import MIX_PRESETS, SCALES, PlantedMix, resolve_scale


def test_default_mix_is_the_historical_one():
    mix = PlantedMix()
    assert (mix.near_duplicate_rate, mix.low_quality_rate, mix.fixable_rate, mix.leak_rate,
            mix.unrelated_chart_share) == (0.12, 0.05, 0.01, 0.02, 0.5)
    # the draw the generator always made for chart low-quality kinds (keeps the demo byte-identical)
    assert mix.chart_low_quality_kinds() == ("unrelated_question", "unrelated_question", "unrelated_question",
                                             "wrong_answer", "garbled_answer", "truncated_answer")
    assert SCALES["demo"].mix == mix and SCALES["bench"].mix == mix
    # the study plants more (a fifth low-quality, a fifth near-duplicates): see its comment
    assert SCALES["study"].mix == PlantedMix(near_duplicate_rate=0.2, low_quality_rate=0.2)
    assert mix.refusal_share == 0.0


@pytest.mark.parametrize("share", [0.0, 0.25, 0.6, 1.0])
def test_unrelated_chart_share(share):
    kinds = PlantedMix(unrelated_chart_share=share).chart_low_quality_kinds()
    assert kinds.count("unrelated_question") / len(kinds) == pytest.approx(share)
    others = collections.Counter(k for k in kinds if k != "unrelated_question")
    assert len(set(others.values())) <= 1


@pytest.mark.parametrize("kwargs, field", [
    ({"low_quality_rate": -0.01}, "low_quality_rate"),
    ({"leak_rate": 1.5}, "leak_rate"),
    ({"unrelated_chart_share": 1.2}, "unrelated_chart_share"),
    ({"near_duplicate_rate": float("nan")}, "near_duplicate_rate"),
    ({"near_duplicate_rate": 0.5, "low_quality_rate": 0.3, "fixable_rate": 0.1}, "near_duplicate_rate"),
])
def test_mix_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PlantedMix(**kwargs)


def test_resolve_scale_overrides():
    scale = resolve_scale("demo", mix={"low_quality_rate": 0.1})
    assert scale.mix == PlantedMix(low_quality_rate=0.1)
    assert resolve_scale("demo", mix=PlantedMix(leak_rate=0.05)).mix.leak_rate == 0.05
    with pytest.raises(ValueError, match="lowquality"):
        resolve_scale("demo", mix={"lowquality": 0.1})
    study = resolve_scale("study")
    assert (study.records_per_domain, study.eval_items, study.img_min, study.img_max, study.gzip_level) == \
        (5000, 500, 192, 448, SCALES["demo"].gzip_level)


def test_plan_follows_the_mix():
    scale = resolve_scale("demo", 200, 50, mix={"near_duplicate_rate": 0.2, "low_quality_rate": 0.1,
                                                "fixable_rate": 0.0, "leak_rate": 0.0,
                                                "unrelated_chart_share": 1.0})
    plan = build_plan(scale, 0)
    per_domain = collections.Counter(u.domain for u in plan.units)
    assert set(per_domain.values()) == {200}
    assert sum(u.kind == "dup" for u in plan.units) == 8 * 40
    assert sum(u.lq is not None for u in plan.units) == 8 * 20
    assert not any(u.no_image_token for u in plan.units) and not any(u.kind == "leak" for u in plan.units)
    assert {u.lq for u in plan.units if u.domain == "chart" and u.lq} == {"unrelated_question"}


def test_refusal_share_turns_that_share_of_low_quality_records_into_refusals_and_0_changes_nothing():
    base = {"near_duplicate_rate": 0.2, "low_quality_rate": 0.2}
    plain = build_plan(resolve_scale("demo", 300, 50, mix=base), 0)
    assert [u.lq for u in plain.units] == \
        [u.lq for u in build_plan(resolve_scale("demo", 300, 50, mix={**base, "refusal_share": 0.0}), 0).units]
    refusing = build_plan(resolve_scale("demo", 300, 50, mix={**base, "refusal_share": 0.5}), 0)
    lq = [(a.lq, b.lq) for a, b in zip(plain.units, refusing.units) if a.lq]
    assert len(lq) == 8 * 60 and all(b is not None for _, b in lq)   # the same records are low-quality
    refused = sum(b == "refusal" for _, b in lq)
    assert 0.4 < refused / len(lq) < 0.6
    assert all(a == b for a, b in lq if b != "refusal")               # the others keep their kind
    assert {u.domain for u in refusing.units if u.lq == "refusal"} == \
        {u.domain for u in refusing.units}                            # every domain has some


def test_the_refusals_preset_refuses_half_of_the_study_records_and_the_cli_expands_it():
    from mm_assets.cli import _mix_overrides

    assert _mix_overrides(["refusals"]) == MIX_PRESETS["refusals"]
    assert _mix_overrides(["refusals", "leak_rate=0.05"]) == {**MIX_PRESETS["refusals"], "leak_rate": 0.05}
    assert _mix_overrides(["refusals", "refusal_share=0.5"])["refusal_share"] == 0.5   # later pairs win
    with pytest.raises(SystemExit, match="refusals"):
        _mix_overrides(["refusal"])
    plan = build_plan(resolve_scale("study", mix=MIX_PRESETS["refusals"]), 0)   # fits every domain
    kinds = collections.Counter(u.lq for u in plan.units)
    assert 0.47 < kinds["refusal"] / len(plan.units) < 0.53
    assert 0.06 < (sum(kinds.values()) - kinds[None] - kinds["refusal"]) / len(plan.units) < 0.10


@pytest.mark.parametrize("with_image", [True, False])
def test_a_refusal_answers_every_question_of_the_row_with_one_refusal(with_image):
    qas = [QA("How many stars are there?", "3"), QA("What colour is the square?", "red")]
    conv = build(qas, with_image, random.Random(0))
    new, applied = corrupt(conv, qas, "refusal", random.Random(3), with_image)
    assert applied == "refusal"
    assert [t["value"] for t in new[0::2]] == [t["value"] for t in conv[0::2]]   # questions untouched
    assert len({t["value"] for t in new[1::2]}) == 1 and new[1]["value"] in REFUSALS


def test_plan_rejects_a_mix_the_domain_cannot_hold():
    scale = resolve_scale("demo", 10, 6, mix={"near_duplicate_rate": 0.4, "low_quality_rate": 0.4})
    with pytest.raises(ValueError, match="base records"):
        build_plan(scale, 0)


def test_generate_with_a_mix_override(tmp_path):
    mix = {"low_quality_rate": 0.15, "unrelated_chart_share": 0.0, "leak_rate": 0.0}
    summary = generate_sample_data(tmp_path, scale="demo", seed=1, workers=1, mix=mix,
                                   _records_per_domain=40, _eval_items=6)
    truth = json.loads((tmp_path / "truth" / "planted_truth.json").read_text())
    assert truth["mix"] == summary["mix"] == PlantedMix(**mix).as_dict()
    assert summary["low_quality"] == len(truth["low_quality"]) == 8 * 6
    assert summary["leaked_eval_items"] == 0
    assert "unrelated_question" not in {x["kind"] for x in truth["low_quality"]}


# ------------------------------------------------------------------------------ instruction helpers

def test_reword_keeps_the_instruction():
    rng = random.Random(0)
    mc = "Which object is furthest to the right?\nA. The red circle.\nB. The blue square." + REALWORLD_MC_SUFFIX
    for question in ("How many colour tiles are there in the image?" + DOCVQA_SUFFIX,
                     COUNTBENCH_PREFIX + "How many stars are there in the image?", mc):
        conv = build([QA(question, "2")], True, rng)
        new = reword_first_question(conv, rng, text_only=False)[0]["value"].replace("<image>", "").strip()
        prefix, body, tail = split_instruction(question)
        assert new != question and (prefix or tail)
        assert new.startswith(prefix) and new.endswith(tail)
    assert split_instruction("What colour is the image?") == ("", "What colour is the image?", "")


@pytest.mark.parametrize("answer, wrong", [("7", None), ("B", "C"), ("Yes", "No"), ("12", None), ("red", "blue")])
def test_corruptions_change_bare_answers(answer, wrong):
    qa = QA("q" + DOCVQA_SUFFIX, answer, wrong=wrong, short=answer, form="short")
    for kind in ("wrong_answer", "garbled_answer", "truncated_answer"):
        conv = build([qa], True, random.Random(1))
        new, applied = corrupt(conv, [qa], kind, random.Random(2), True)
        assert new[1]["value"] != answer and new[1]["value"], (kind, new[1]["value"])
        if kind == "wrong_answer" and wrong:
            assert (applied, new[1]["value"]) == ("wrong_answer", wrong)
