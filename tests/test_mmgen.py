"""MM-GEN's plain functions: subgroups from a reference split, the template generator and the
validation against each benchmark's metric, the cache (a killed generation resumes with the
rest), the filters, and how generated samples enter the ledger and the curated dataset."""

import json
import textwrap

import numpy as np
import polars as pl
import pytest

from mm_assets.curated.compose import add_generated
from mm_assets.mmgen.filters import duplicates_within_groups, perplexity_outliers, sample_vectors
from mm_assets.mmgen.generate import (NONE_ANSWER, GenRequest, TemplateGenerator, answer_form, answer_forms,
                                      answer_problem, body_of, eval_style_question, generate_all, parse_generation,
                                      training_record)
from mm_assets.mmgen.subgroups import assign_subgroups, describe_subgroups, pick_candidates, place_in_subgroups
from mm_assets.storage import Storage
from blocked_child import kill_when_blocked


def _record(*turns, domain="chart"):
    conv = []
    for q, a in turns:
        conv += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return {"sample_id": "s", "domain": domain, "conversations": conv,
            "image": {"ext": "png", "sha256": "ab" * 32, "path": "x.png"}}


def _request(bench, record, subgroup=None, description="questions about value"):
    return GenRequest(bench, subgroup or f"{bench}/g", description, (("What is the value?", "4"),), b"img",
                      "ab" * 32, record)


def test_reference_split_is_drawn_apart_from_the_scored_split_and_read_by_the_graph(tmp_path):
    from mm_assets.sample_data.eval_sets import REFERENCE_DIR, write_eval_set
    from mm_assets.sources.eval_sets import load_eval_set

    for split in ("eval", "reference"):
        write_eval_set("docvqa", 6, 0, tmp_path, split)
        write_eval_set("countbench", 6, 0, tmp_path, split)
    for bench in ("docvqa", "countbench"):
        scored, _ = load_eval_set(Storage(str(tmp_path)), bench)
        ref, bad = load_eval_set(Storage(str(tmp_path)).child(REFERENCE_DIR), bench)
        assert ref.height == 6 and bad.height == 0
        assert not set(ref["image_sha256"]) & set(scored["image_sha256"])     # no scored image is a reference image
    assert not set(load_eval_set(Storage(str(tmp_path)).child(REFERENCE_DIR), "docvqa")[0]["item_id"]) & \
        set(load_eval_set(Storage(str(tmp_path)), "docvqa")[0]["item_id"])


def test_subgroups_are_question_types_where_the_benchmark_has_them_else_question_clusters():
    natives = [json.dumps({"question_types": [t]}) for t in ("form", "layout", "form")] + \
              [json.dumps({"type": t}) for t in ("human_test", "augmented_test")] + [json.dumps({})] * 10
    items = pl.DataFrame({"benchmark": ["docvqa"] * 3 + ["chartqa"] * 2 + ["countbench"] * 10,
                          "item_id": [str(i) for i in range(15)], "native": natives,
                          "question": ["What is the date?"] * 5 + [f"How many {w} are there?" for w in
                                                                   ["cats"] * 5 + ["dogs"] * 5],
                          "answers": [["x"]] * 15})
    rng = np.random.default_rng(0)
    two_kinds = np.repeat(np.eye(8)[:2], 5, axis=0) + 0.01 * rng.normal(size=(10, 8))
    vecs = np.concatenate([rng.normal(size=(5, 8)), two_kinds])
    out, centroids = assign_subgroups(items, vecs.astype(np.float32), clusters=2)
    assert out["subgroup"].to_list()[:5] == ["docvqa/form", "docvqa/layout", "docvqa/form", "chartqa/human",
                                            "chartqa/augmented"]
    count = out.filter(pl.col("benchmark") == "countbench")
    assert set(count["by"]) == {"question_cluster"} and count["subgroup"].n_unique() == 2
    # the two clusters are the two question kinds
    assert count.group_by("subgroup").agg(pl.col("question").n_unique())["question"].to_list() == [1, 1]
    # scored items land in the reference split's subgroups: by their type, or their question's nearest cluster
    dog = count.filter(pl.col("question") == "How many dogs are there?")["subgroup"][0]
    scored = pl.DataFrame({"benchmark": ["docvqa", "countbench"], "item_id": ["s1", "s2"],
                           "native": [json.dumps({"question_types": ["layout"]}), "{}"]})
    placed = place_in_subgroups(scored, np.stack([np.zeros(8), np.eye(8)[1]]).astype(np.float32), centroids)
    assert placed["subgroup"].to_list() == ["docvqa/layout", dog]
    described = describe_subgroups(out)
    form = described.filter(pl.col("subgroup") == "docvqa/form").row(0, named=True)
    assert form["items"] == 2 and "date" in form["description"] and len(json.loads(form["examples"])) == 2


def test_candidates_come_round_robin_from_every_reference_item_and_never_from_excluded_samples():
    items = pl.DataFrame({"item_id": ["a", "b"], "subgroup": ["chartqa/human"] * 2})
    nb = pl.DataFrame({"benchmark": ["chartqa"] * 6, "eval_item_id": ["a", "a", "a", "b", "b", "b"],
                       "sample_id": ["s1", "s2", "s3", "s1", "s4", "s5"], "domain": ["chart"] * 6,
                       "similarity": [0.9, 0.8, 0.7, 0.9, 0.8, 0.7], "rank": [1, 2, 3, 1, 2, 3]})
    got = pick_candidates(nb, items, {"chartqa/human": 3}, excluded={"s2"})
    assert got["sample_id"].to_list() == ["s1", "s4", "s3"]          # rank 1 of a, (s1 again), rank 2 of b, ...
    assert set(got["reference_item_id"]) == {"a", "b"}


def test_the_template_generator_retargets_a_fitting_turn_into_the_benchmark_format():
    gen = TemplateGenerator()
    chart = _record(("<image>\nDescribe the chart.", "A bar chart of revenue by city with five bars."),
                    ("What is the value for Paris?\nAnswer the question with a single word.", "42"))
    count = _record(("Look at the image carefully and count the objects. Answer with just a number, without any "
                     "additional text. How many red circles are there?", "5"))
    point = _record(("<image>\nPoint to any crosses in the image.",
                     '<points x1="13.3" y1="70.7" x2="29.8" y2="61.1" alt="crosses">crosses</points>'))
    caption = _record(("<image>\nDescribe the image.", "A long description of a scene with many objects in it."))
    out = gen.generate([_request("chartqa", chart), _request("countbench", count), _request("pixmo_points", point),
                        _request("countbench", caption)])
    assert parse_generation(out[0]) == ("What is the value for Paris?", "42")
    assert parse_generation(out[1]) == ("How many red circles are there?", "5")
    assert parse_generation(out[2])[0] == "crosses"
    assert out[3] == ""                                        # nothing in the record fits a count
    # a number that is not a count is not retargeted into CountBench's counting prompt
    arith = _record(("<image>\nWhat is the difference between the two values?", "4"))
    assert gen.generate([_request("countbench", arith)]) == [""]


def test_the_drawn_generator_writes_what_the_image_shows_that_its_record_does_not_ask(tmp_path):
    """The `drawn` generator (generated data only): from every question the image's drawing
    supports it writes one the record does not ask, with the drawn answer — right even where the
    record's own answer is a planted wrong one; an image without content gets the template's."""
    from mm_assets.mmgen.generate import load_generator

    content = tmp_path / "image_content.jsonl"
    drawn = [{"question": "What is the value for Paris?", "answer": "42"},
             {"question": "What is the value for Rome?", "answer": "17"},
             {"question": "Which city has the highest value?", "answer": "Paris"},
             {"question": "Describe the chart.", "answer": "A bar chart of revenue by city with five bars."}]
    content.write_text(json.dumps({"image_sha256": "ab" * 32, "image": "x.png",
                                   "qas": [{**qa, "form": "short", "tag": ""} for qa in drawn]}) + "\n")
    gen = load_generator("drawn", image_content=str(content))
    assert (gen.model_id, gen.uses_record) == ("drawn", True)
    asks_paris_wrongly = _record(("What is the value for Paris?\nAnswer the question with a single word.", "40"))
    value = _request("chartqa", asks_paris_wrongly, description="value for a city")
    highest = _request("chartqa", asks_paris_wrongly, description="which city is highest")
    knows_all = _record(*[(qa["question"], "0") for qa in drawn])
    elsewhere = GenRequest("chartqa", "chartqa/g", "value", (), b"img", "cd" * 32, asks_paris_wrongly)
    out = gen.generate([value, highest, _request("chartqa", knows_all), elsewhere])
    assert parse_generation(out[0]) == ("What is the value for Rome?", "17")       # not asked by the record
    assert parse_generation(out[1]) == ("Which city has the highest value?", "Paris")   # nearest the subgroup
    assert parse_generation(out[2]) == ("What is the value for Paris?", "42")    # the drawn answer, not "0"
    assert parse_generation(out[3]) == ("What is the value for Paris?", "40")    # no content: the template's
    with pytest.raises(ValueError, match="real data has not: use hf or vllm"):
        load_generator("drawn")
    with pytest.raises(FileNotFoundError, match="regenerate the sample data"):
        load_generator("drawn", image_content=str(tmp_path / "none.jsonl"))


@pytest.mark.parametrize("bench,answer,form", [
    ("realworldqa", "Yes", "yes/no"), ("realworldqa", "no.", "yes/no"), ("realworldqa", "C", "letter"),
    ("realworldqa", "4", "number"), ("realworldqa", "Above", "text"), ("chartqa", "33.6", "number"),
    ("chartqa", "80%", "number"), ("docvqa", "$2,122.31", "number"), ("docvqa", "Julia Baker", "text"),
    ("pixmo_points", NONE_ANSWER, "none"), ("pixmo_points", '<points x1="1" y1="2">a</points>', "points")])
def test_an_answers_form_is_what_kind_of_answer_it_is(bench, answer, form):
    assert answer_form(bench, answer) == form


def test_a_generation_answers_in_its_subgroups_form_or_is_rejected(tmp_path):
    """A RealWorldQA subgroup of yes/no questions ("Is the square above the circle?") gets a yes/no
    question from the candidate's record where it has one, and no "Above"/"Below" answer where it
    has none: taught to its subgroup, that answer form scored 0 on every one of its items."""
    assert answer_forms("realworldqa", ["No", "Yes", "No"]) == ("yes/no",)
    assert answer_forms("chartqa", ["12"] * 9 + ["Paris"]) == ("number", "text")     # 10 % is a form of the subgroup
    assert answer_forms("chartqa", ["12"] * 19 + ["Paris"]) == ("number",)
    assert answer_forms("countbench", ["3"]) == answer_forms("pixmo_points", ["circle"]) == ()   # fixed by the metric
    has_yes_no = _record(("Is the red square above or below the blue circle?", "Above"),
                         ("Is the red square above the blue circle?\nPlease answer directly with a single word or "
                          "number.", "Yes"), domain="general")
    above_only = _record(("Is the red square above or below the blue circle?", "Above"), domain="general")

    def request(record, forms):
        return GenRequest("realworldqa", "realworldqa/cluster0", "realworldqa questions about above", (), b"img",
                          "ab" * 32, record, forms)

    out = TemplateGenerator().generate([request(has_yes_no, ("yes/no",)), request(has_yes_no, ())])
    assert parse_generation(out[0]) == ("Is the red square above the blue circle?", "Yes")
    assert parse_generation(out[1]) == ("Is the red square above or below the blue circle?", "Above")   # no forms
    results, stats = generate_all([("s0", "r0", request(above_only, ("yes/no",))),
                                   ("s1", "r0", request(has_yes_no, ("yes/no",)))],
                                  TemplateGenerator(), Storage(str(tmp_path / "cache")))
    assert results["reason"].to_list() == ["answer_form_not_the_subgroups", "valid"]
    assert stats["rejected"] == {"answer_form_not_the_subgroups": 1}


@pytest.mark.parametrize("bench,answer,problem", [
    ("countbench", "7", None), ("countbench", "seven", None), ("countbench", "about 7", "answer_not_a_count"),
    ("chartqa", "42", None), ("chartqa", "the value is forty two", "answer_too_long"),
    ("docvqa", "$159.34", None), ("realworldqa", "B", None), ("pixmo_points", NONE_ANSWER, None),
    ("pixmo_points", "crosses", "answer_not_points"), ("chartqa", " ", "empty_answer")])
def test_answers_are_validated_in_the_form_the_benchmark_metric_scores(bench, answer, problem):
    assert answer_problem(bench, answer) == problem


def test_instruction_lines_are_stripped_from_a_retargeted_question():
    assert body_of("<image>\nWhich team has the lowest share?\nPlease try to answer the question with short words "
                   "or phrases if possible.") == "Which team has the lowest share?"


def test_a_realworldqa_question_gets_back_its_options_and_instruction_as_the_benchmark_items_hold_them():
    """RealWorldQA's prompt adds nothing: its items carry the options and the answer instruction in
    the question. A retargeted question, stripped of its instruction, is written back exactly in
    the form of the eval look-alike's items (multiple choice, yes/no and counts)."""
    import random

    from mm_assets.sample_data.eval_sets import EVAL_SIZING
    from mm_assets.sample_data.families.general import realworld_item

    rng, kinds = random.Random(3), set()
    for _ in range(40):
        _, question, answer = realworld_item(rng, EVAL_SIZING)
        kinds.add("letter" if answer in "ABCD" else "short")
        assert eval_style_question("realworldqa", body_of(question)) == question
    assert kinds == {"letter", "short"}
    record = training_record(_request("realworldqa", _record()), "g0", "Is the red circle above the blue square?",
                             "Yes", {})
    assert record["conversations"][0]["value"] == ("<image>\nIs the red circle above the blue square?\n"
                                                   "Please answer directly with a single word or number.")
    assert eval_style_question("chartqa", "What is the value?") == "What is the value?"   # its prompt adds it


CHILD = textwrap.dedent("""
    import json, pathlib, sys, time
    from mm_assets.mmgen.generate import GenRequest, TemplateGenerator, generate_all
    from mm_assets.storage import Storage

    records_path, cache_root, marker, block_after, batch_size = sys.argv[1:6]

    class BlocksAfter(TemplateGenerator):
        calls = 0
        def generate(self, requests):
            if self.calls == int(block_after):
                pathlib.Path(marker).write_text(str(self.calls))
                time.sleep(3600)
            self.calls += 1
            return super().generate(requests)

    requests = [(f"s{i}", "ref0", GenRequest("chartqa", "chartqa/g", "questions about value",
                                             (("What is the value?", "4"),), b"img", "ab" * 32, r))
                for i, r in enumerate(json.loads(pathlib.Path(records_path).read_text()))]
    generate_all(requests, BlocksAfter(), Storage(cache_root), batch_size=int(batch_size))
    """)


def test_a_killed_generation_resumes_with_the_rest_and_records_are_training_records(tmp_path):
    """The generating process is SIGKILLed while its third batch is in flight; the rerun reads the
    two finished batches from the cache, generates only the rest, and equals an uninterrupted run."""
    records = [_record((f"What is the value for city {i}?\nAnswer the question with a single word.", str(i)))
               for i in range(10)]
    requests = [(f"s{i}", "ref0", _request("chartqa", r)) for i, r in enumerate(records)]
    (tmp_path / "records.json").write_text(json.dumps(records))
    cache_root = tmp_path / "cache"
    kill_when_blocked(tmp_path, CHILD, str(tmp_path / "records.json"), str(cache_root), "2", "3")
    results, stats = generate_all(requests, TemplateGenerator(), Storage(str(cache_root)), batch_size=3)
    assert stats["from_cache"] == 6 and stats["generated"] == 4          # two batches of 3 survived the kill
    assert int(results["cached"].sum()) == 6
    fresh, _ = generate_all(requests, TemplateGenerator(), Storage(str(tmp_path / "other")), batch_size=3)
    assert results.drop("cached").equals(fresh.drop("cached"))
    assert results["ok"].all()
    rec = json.loads(results["json"][0])
    human = rec["conversations"][0]["value"]
    assert human.startswith("<image>\n") and human.count("<image>") == 1
    assert human.endswith("\nAnswer the question with a single word.")      # the ChartQA eval prompt, exactly
    assert rec["sample_id"] == results["gen_id"][0] and rec["origin"]["mmgen"]["source_sample_id"] == "s0"


def test_rejections_are_counted_by_reason(tmp_path):
    requests = [("s0", "r", _request("countbench", _record(("<image>\nDescribe it.", "A long caption of it."))))]
    results, stats = generate_all(requests, TemplateGenerator(), Storage(str(tmp_path)))
    assert stats["rejected"] == {"nothing_generated": 1} and not results["ok"][0] and results["json"][0] is None


def test_near_duplicates_follow_semdedups_rule_within_a_subgroup_only():
    v = np.array([[1, 0, 0], [0.999, 0.01, 0], [0, 1, 0], [1, 0, 0]], dtype=np.float32)
    assert duplicates_within_groups(v, ["a", "a", "a", "b"], eps=0.02) == [None, 0, None, None]
    assert duplicates_within_groups(v, ["a", "a", "a", "b"], eps=0.0) == [None, None, None, None]


def test_a_duplicate_generation_repeats_both_the_image_and_the_text():
    """The same question and answer about two different pictures are two samples (counting
    questions repeat by design); the same text about a near-identical image is one."""
    text = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)        # rows 0-2: one question
    image = np.array([[1, 0, 0], [0, 1, 0], [0.999, 0, 0.02], [1, 0, 0]], dtype=np.float32)
    assert duplicates_within_groups(sample_vectors(image, text), ["a"] * 4, eps=0.02) == [None, None, 0, None]
    assert duplicates_within_groups(text, ["a"] * 4, eps=0.02) == [None, 0, 0, None]    # text alone: 2 lost
    with pytest.raises(ValueError, match="3 image vectors for 4 texts"):
        sample_vectors(image[:3], text)


def test_perplexity_outliers_are_the_highest_nll_per_subgroup_and_the_unscored():
    flags = perplexity_outliers([1.0, 3.0, 2.0, None, 5.0], ["a", "a", "a", "a", "b"], keep_fraction=0.5)
    assert flags == [False, True, False, True, False]


def test_generated_samples_join_next_to_a_kept_source_and_every_one_is_in_the_ledger():
    gen = pl.DataFrame({"gen_id": ["g1", "g2", "g3", "g4"], "source_sample_id": ["s1", "s2", "s1", "s1"],
                        "subgroup": ["chartqa/human"] * 4, "reference_item_id": ["r"] * 4,
                        "ok": [True, True, False, True], "reason": ["valid", "valid", "answer_too_long", "valid"],
                        "duplicate_of": [None, None, None, "g1"], "perplexity_outlier": [False] * 4,
                        "nll": [1.0, 1.0, None, 1.0], "json": ['{"a": 1}', '{"b": 2}', None, '{"c": 3}']})
    additions, ledger = add_generated(gen, {"s1": 2, "s2": 0}, "r", "h")
    assert additions == {"s1": [("g1", b'{"a": 1}')]}
    final = dict(ledger.filter(pl.col("step") == "curated").select("sample_id", "decision").iter_rows())
    assert final == {"g1": "in", "g2": "out", "g3": "out", "g4": "out"}
    reasons = dict(ledger.filter(pl.col("step") == "mmgen").select("sample_id", "reason").iter_rows())
    assert "near duplicate of g1" in reasons["g4"] and "answer_too_long" in reasons["g3"]
    assert set(ledger["related_id"]) == {"s1", "s2"}                 # the source image of each


def test_a_local_vlm_generates_through_the_same_interface_and_its_outputs_are_validated(tmp_path):
    """The `hf` generator: a (random, tiny) local VLM checkpoint, prompted with the subgroup's
    description and examples and shown the image; whatever it writes is parsed and validated like
    the template's, cached under its own model id, and rejections are counted."""
    import io

    from PIL import Image

    from mm_assets.mmgen.generate import load_generator, vlm_prompt
    from mm_assets.vlm.random_checkpoint import write_random_checkpoint

    write_random_checkpoint(tmp_path / "vlm", ["Question: How many dots? Answer: 3"] * 40, seed=0)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, format="PNG")
    req = GenRequest("countbench", "countbench/cluster0", "countbench questions about dots",
                     (("How many dots are there?", "3"),), buf.getvalue(), "cd" * 32, _record(("q", "a")))
    assert "How many dots are there?" in vlm_prompt(req) and "<image>" not in vlm_prompt(req)
    gen = load_generator("hf", str(tmp_path / "vlm"))
    try:
        assert gen.model_id.startswith("hf:") and not gen.uses_record
        results, stats = generate_all([("s0", "r0", req)], gen, Storage(str(tmp_path / "cache")))
    finally:
        gen.close()
    assert stats["generated"] == 1 and results["raw"][0].startswith("Question:")
    assert stats["valid"] + sum(stats["rejected"].values()) == 1
    with pytest.raises(ValueError, match="needs `model`"):
        load_generator("vllm")
