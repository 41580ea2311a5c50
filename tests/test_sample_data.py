"""The look-alike data generator: layout, formats, planted truth, reproducibility."""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mm_assets.sample_data import generate_sample_data
from mm_assets.sources.reasons import Reason

DOMAINS = {"general", "chart", "ocr", "caption", "domain_specific", "code_math", "language", "detection"}
BENCHMARKS = ("docvqa", "chartqa", "countbench", "realworldqa", "pixmo_points")
NATIVE_COLUMNS = {
    "docvqa": ["questionId", "question", "question_types", "image", "docId", "ucsf_document_id",
               "ucsf_document_page_no", "answers", "data_split"],
    "chartqa": ["type", "question", "answer", "image"],
    "countbench": ["image", "text", "question", "number"],
    "realworldqa": ["image", "question", "answer"],
    "pixmo_points": ["image_url", "image_sha256", "label", "points", "masks"],
}
PLANTED_REASONS = {Reason.INVALID_JSON, Reason.NON_UTF8, Reason.EMPTY_CONVERSATION, Reason.BAD_ROLE_ORDER,
                   Reason.IMAGE_TOKEN_MISMATCH, Reason.MISSING_IMAGE, Reason.CORRUPT_IMAGE,
                   Reason.TRUNCATED_TARBALL, Reason.MISSING_FIELD, Reason.UNKNOWN_SOURCE,
                   Reason.NOT_AN_OBJECT}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    before = os.times()
    summary = generate_sample_data(out, scale="demo", seed=0, workers=2)
    after = os.times()
    cpu = (after.user + after.system + after.children_user + after.children_system
           - before.user - before.system - before.children_user - before.children_system)
    return out, {**summary, "cpu_seconds": cpu}


@pytest.fixture(scope="module")
def truth(demo):
    return json.loads((demo[0] / "truth" / "planted_truth.json").read_text())


@pytest.fixture(scope="module")
def records(demo):
    return json.loads((demo[0] / "main" / "mammoth_si.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def mapping(demo):
    return json.loads((demo[0] / "source_to_domain.json").read_text())


@pytest.fixture(scope="module")
def tar_members(demo):
    """{tarball name: {member path: bytes}} for the main tarballs."""
    out = {}
    for p in sorted((demo[0] / "main" / "images").glob("shard_*.tar.gz")):
        with tarfile.open(p) as tar:
            out[p.name] = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    return out


def _image_bytes(tar_members) -> dict[str, bytes]:
    return {name: data for members in tar_members.values() for name, data in members.items()}


def _split_elements(data: bytes) -> list[bytes]:
    """Tolerant JSON-array element splitter: bracket and double-quoted-string aware."""
    assert data.lstrip().startswith(b"[")
    body = data[data.index(b"[") + 1:]
    elements, depth, start, in_str, esc = [], 0, None, False, False
    for i, c in enumerate(body):
        ch = chr(c)
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if start is None and not ch.isspace() and ch not in ",]":
            start = i
        if ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            if depth == 0:          # closing bracket of the array
                if start is not None:
                    elements.append(body[start:i].strip())
                break
            depth -= 1
        elif ch == "," and depth == 0:
            elements.append(body[start:i].strip())
            start = None
    return elements


# ------------------------------------------------------------------------------------ layout

def test_layout(demo):
    out, summary = demo
    assert (out / "source_to_domain.json").is_file()
    assert (out / "main" / "mammoth_si.json").is_file()
    shards = sorted((out / "main" / "images").glob("shard_*.tar.gz"))
    assert len(shards) >= 2 and len(shards) == summary["shards"]
    assert (out / "dirty" / "mammoth_si.json").is_file()
    assert (out / "dirty" / "images" / "shard_0000.tar.gz").is_file()
    assert (out / "dirty" / "images" / "shard_0001.tar.gz").is_file()
    for bench in BENCHMARKS:
        assert (out / "eval" / f"{bench}.parquet").is_file()
    assert any((out / "eval" / "pixmo_points_images").glob("*.jpg"))
    assert (out / "truth" / "planted_truth.json").is_file()
    assert not list(out.rglob("*.tmp-*"))


def test_demo_generation_time(demo):
    # the demo's data in a minute of its two workers: counted in CPU time (51 core-s measured),
    # since the suite's load stretches the wall clock (113 s once, beside four other processes)
    assert demo[1]["cpu_seconds"] <= 2 * 60


def test_source_to_domain(mapping, records):
    assert set(mapping.values()) == DOMAINS
    for real in ("ureader_chart", "tinychart", "dvqa", "chartqa", "docvqa", "textocr", "ocr_junpeng",
                 "sharegpt4v_coco", "geometry3k", "orca_math", "clevr", "scienceqa", "gqa"):
        assert real in mapping
    assert all(re.fullmatch(r"[a-z0-9_]+", s) for s in mapping)
    assert {r["source"] for r in records} <= set(mapping)


# ------------------------------------------------------------------------------------ main records

def test_main_array_matches_truth(records, truth, mapping):
    assert isinstance(records, list)
    assert len(records) == truth["main"]["records"]
    per_domain = collections.Counter(mapping[r["source"]] for r in records)
    assert per_domain == truth["main"]["per_domain"]
    assert set(per_domain) == DOMAINS
    assert 2000 <= len(records) <= 2800


def test_record_format(records, mapping):
    for r in records:
        assert list(r) in (["id", "image", "conversations", "source"], ["id", "conversations", "source"])
        conv = r["conversations"]
        assert len(conv) % 2 == 0 and conv
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert all(isinstance(t["value"], str) and t["value"] for t in conv)
        assert ("image" in r) == (mapping[r["source"]] != "language")
    ids = [r["id"] for r in records]
    n_int = sum(isinstance(i, int) for i in ids)
    assert 0 < n_int < len(ids) / 2            # some ints, mostly strings
    assert len({(type(i), i) for i in ids}) < len(ids)   # ids are reused across sources
    by_id = collections.defaultdict(set)
    for r in records:
        by_id[str(r["id"])].add(r["source"])
    assert any(len(s) > 1 for s in by_id.values())
    assert any(len(r["conversations"]) == 4 for r in records)
    assert any(len(r["conversations"]) == 6 for r in records)


def test_image_tokens(records, truth):
    fixable = {ref["ordinal"] for ref in truth["image_token_fixable"]}
    n_image_rows = sum("image" in r for r in records)
    assert 0.005 <= len(fixable) / n_image_rows <= 0.02
    for i, r in enumerate(records):
        counts = [t["value"].count("<image>") for t in r["conversations"]]
        if "image" not in r:
            assert sum(counts) == 0
        elif i in fixable:
            assert sum(counts) == 0
        else:
            assert counts[0] == 1 and sum(counts) == 1


def test_every_image_in_exactly_one_tarball(records, tar_members, mapping):
    seen = collections.Counter(name for members in tar_members.values() for name in members)
    paths = [r["image"] for r in records if "image" in r]
    assert len(paths) == len(set(paths))
    assert all(seen[p] == 1 for p in paths)
    assert set(seen) == set(paths)
    for name, members in tar_members.items():
        # directory trees, not WebDataset: members live under <source dir>/<family>/<n>.<ext>
        assert all(re.fullmatch(r"gen_[a-z_]+/[a-z]+/\d{5}\.(jpg|png)", m) for m in members)
        assert len({m.split("/")[0] for m in members}) >= 5, f"{name} should mix domains"
    formats = collections.Counter(p.rsplit(".", 1)[1] for p in paths)
    assert formats["jpg"] > formats["png"] > 0


def test_images_decode_and_vary_in_size(tar_members):
    sizes = set()
    for data in list(_image_bytes(tar_members).values())[::10]:
        img = Image.open(io.BytesIO(data))
        img.load()
        sizes.add(img.size)
        assert 100 <= min(img.size) and max(img.size) <= 600
    assert len(sizes) > 50
    assert any(w != h for w, h in sizes)


# ------------------------------------------------------------------------------------ planted truth

def test_planted_rates(truth, records):
    n = truth["main"]["records"]
    dups = [d for g in truth["near_duplicate_groups"] for d in g["duplicates"]]
    assert 0.10 <= len(dups) / n <= 0.14
    assert truth["near_duplicate_rate"] == pytest.approx(len(dups) / n)
    assert {g["original"]["domain"] for g in truth["near_duplicate_groups"]} == DOMAINS
    kinds = {g["kind"] for g in truth["near_duplicate_groups"]}
    assert kinds == {"exact_copy", "reencoded_jpeg", "crop_resize", "reworded_question", "text_copy",
                     "text_reworded"}
    assert 0.03 <= len(truth["low_quality"]) / n <= 0.07
    assert {x["kind"] for x in truth["low_quality"]} == {"unrelated_question", "wrong_answer",
                                                         "garbled_answer", "truncated_answer"}
    leaks = collections.Counter(x["benchmark"] for x in truth["leaked_eval_items"])
    assert set(leaks) == set(BENCHMARKS)
    for bench, count in leaks.items():
        assert 1 <= count <= 0.05 * 100
    # refs point at the right records
    for ref in [g["original"] for g in truth["near_duplicate_groups"]] + dups:
        assert records[ref["ordinal"]]["id"] == ref["id"]
        assert records[ref["ordinal"]]["source"] == ref["source"]
    # every planted ordinal is planted once
    planted = [g["original"]["ordinal"] for g in truth["near_duplicate_groups"]] + [d["ordinal"] for d in dups] \
        + [x["ref"]["ordinal"] for x in truth["low_quality"]] \
        + [x["ref"]["ordinal"] for x in truth["leaked_eval_items"]] \
        + [x["ordinal"] for x in truth["image_token_fixable"]]
    assert len(planted) == len(set(planted))


def test_duplicates_not_adjacent_and_faithful(truth, records, tar_members):
    images = _image_bytes(tar_members)
    for g in truth["near_duplicate_groups"]:
        ords = sorted([g["original"]["ordinal"]] + [d["ordinal"] for d in g["duplicates"]])
        assert all(b - a > 1 for a, b in zip(ords, ords[1:]))
        orig = records[g["original"]["ordinal"]]
        for d in g["duplicates"]:
            dup = records[d["ordinal"]]
            assert dup["id"] != orig["id"] or dup["source"] != orig["source"]
            answers = [t["value"] for t in dup["conversations"][1::2]]
            assert answers == [t["value"] for t in orig["conversations"][1::2]]
            if g["kind"] in ("exact_copy", "text_copy"):
                assert dup["conversations"] == orig["conversations"]
            if g["kind"] in ("reworded_question", "text_reworded"):
                assert dup["conversations"][0] != orig["conversations"][0]
            if g["kind"] in ("exact_copy", "reworded_question"):
                assert dup["image"] != orig["image"]
                assert images[dup["image"]] == images[orig["image"]]
            if g["kind"] in ("reencoded_jpeg", "crop_resize"):
                assert images[dup["image"]] != images[orig["image"]]


def test_low_quality_rows(truth, records):
    for x in truth["low_quality"]:
        r = records[x["ref"]["ordinal"]]
        if x["kind"] == "unrelated_question":
            assert x["ref"]["domain"] == "chart"
            assert "table" in r["conversations"][0]["value"].lower()
            assert r["conversations"][1]["value"].startswith("| Category |")


def test_leaked_items_copy_eval_questions(demo, truth, records):
    out = demo[0]
    tables = {b: pq.read_table(out / "eval" / f"{b}.parquet").to_pylist() for b in BENCHMARKS}
    for x in truth["leaked_eval_items"]:
        r = records[x["ref"]["ordinal"]]
        row = tables[x["benchmark"]][x["row_index"]]
        question = r["conversations"][0]["value"].replace("<image>\n", "")
        answer = r["conversations"][1]["value"]
        if x["benchmark"] == "docvqa":
            assert row["questionId"] == x["item_id"]
            assert question == row["question"] and answer in row["answers"]
        elif x["benchmark"] == "pixmo_points":
            assert row["points"] and "point" in answer
        else:
            assert x["item_id"] == x["row_index"]
            assert question == row["question"]
            assert answer == str(row.get("answer", row.get("number")))
        expected = {"docvqa": "ocr", "chartqa": "chart", "countbench": "detection",
                    "pixmo_points": "detection", "realworldqa": "general"}[x["benchmark"]]
        assert x["ref"]["domain"] == expected


def test_distinct_images_are_distinct(records, truth, tar_members):
    """Non-duplicate images never look alike: 8x8 average-hash collisions are rare and, where
    they happen, the 32x32 thumbnails still differ (planted re-encodes differ by < 1 grey level)."""
    images = _image_bytes(tar_members)
    dup_ordinals = {d["ordinal"] for g in truth["near_duplicate_groups"] for d in g["duplicates"]}
    names = [r["image"] for i, r in enumerate(records) if "image" in r and i not in dup_ordinals]
    gray = [Image.open(io.BytesIO(images[n])).convert("L") for n in names]
    small = np.stack([np.asarray(g.resize((8, 8), Image.BOX), np.float32).reshape(-1) for g in gray])
    bits = (small > small.mean(axis=1, keepdims=True)).astype(np.uint64)
    hashes = (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    np.fill_diagonal(dist, 64)
    assert (dist == 0).any(axis=1).mean() <= 0.03
    thumbs = [np.asarray(g.resize((32, 32), Image.BOX), np.float32) for g in gray]
    for a, b in np.argwhere(np.triu(dist <= 2, 1)):
        assert np.abs(thumbs[a] - thumbs[b]).mean() > 2.0, (names[a], names[b])


# ------------------------------------------------------------------------------------ dirty source

def test_dirty_truth_covers_every_reason(truth):
    dirty = truth["dirty"]
    counts = collections.Counter(r["expected"] for r in dirty["records"])
    for reason in PLANTED_REASONS:
        assert counts[str(reason)] >= 2, reason
    assert set(counts) <= {str(r) for r in Reason} | {"ok"}
    assert dirty["good"] == counts["ok"] >= 15
    assert dirty["malformed"] == len(dirty["records"]) - counts["ok"]
    assert [r["ordinal"] for r in dirty["records"]] == list(range(len(dirty["records"])))


def test_dirty_elements_split_and_parse(demo, truth):
    data = (demo[0] / "dirty" / "mammoth_si.json").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    elements = _split_elements(data)
    expected = truth["dirty"]["records"]
    assert len(elements) == len(expected)
    for raw, rec in zip(elements, expected):
        code = rec["expected"]
        if code == Reason.NON_UTF8:
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            continue
        text = raw.decode("utf-8")
        if code == Reason.INVALID_JSON:
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
            continue
        value = json.loads(text)
        if code == Reason.NOT_AN_OBJECT:
            assert not isinstance(value, dict)
        else:
            assert value["id"] == rec["id"]


def test_dirty_tarballs(demo, truth):
    out = demo[0] / "dirty"
    with tarfile.open(out / "images" / "shard_0000.tar.gz") as tar:
        complete = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    truncated_path = out / "images" / "shard_0001.tar.gz"
    with pytest.raises(EOFError):
        with gzip.open(truncated_path) as fh:
            fh.read()
    survived = {}
    with pytest.raises((tarfile.ReadError, EOFError)):
        with tarfile.open(truncated_path, "r|gz") as tar:
            for m in tar:
                if m.isfile():
                    survived[m.name] = tar.extractfile(m).read()
    assert survived and all(n.startswith("dirty_trunc/") for n in survived)

    elements = _split_elements((out / "mammoth_si.json").read_bytes())
    for raw, rec in zip(elements, truth["dirty"]["records"]):
        code = rec["expected"]
        if code not in (Reason.MISSING_IMAGE, Reason.CORRUPT_IMAGE, Reason.TRUNCATED_TARBALL, "ok"):
            continue
        value = json.loads(raw)
        path = value.get("image")
        if isinstance(path, list):          # the one-element list that ingest unwraps
            (path,) = path
        if code == Reason.MISSING_IMAGE:
            assert path not in complete and path not in survived
            assert any(n.startswith(path.rsplit("/", 1)[0] + "/") for n in complete)
        elif code == Reason.CORRUPT_IMAGE:
            with pytest.raises(OSError):
                Image.open(io.BytesIO(complete[path])).load()
        elif code == Reason.TRUNCATED_TARBALL:
            assert path.startswith("dirty_trunc/") and path not in survived
        elif path is not None:
            data = complete.get(path, survived.get(path))
            assert data is not None, path
            Image.open(io.BytesIO(data)).load()


# ------------------------------------------------------------------------------------ eval sets

def test_eval_native_columns(demo):
    out = demo[0]
    for bench, columns in NATIVE_COLUMNS.items():
        table = pq.read_table(out / "eval" / f"{bench}.parquet")
        assert table.schema.names == columns
        assert 90 <= table.num_rows <= 110
        if "image" in columns:
            assert table.schema.field("image").type.names == ["bytes", "path"]
            for row in table.slice(0, 5).to_pylist():
                Image.open(io.BytesIO(row["image"]["bytes"])).load()


def test_eval_contents(demo):
    out = demo[0]
    docvqa = pq.read_table(out / "eval" / "docvqa.parquet").to_pylist()
    assert len({r["questionId"] for r in docvqa}) == len(docvqa)
    assert all(1 <= len(r["answers"]) <= 3 and r["data_split"] == "validation" for r in docvqa)
    chartqa = pq.read_table(out / "eval" / "chartqa.parquet").to_pylist()
    assert {r["type"] for r in chartqa} == {"human_test", "augmented_test"}
    count = pq.read_table(out / "eval" / "countbench.parquet").to_pylist()
    words = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    for r in count:
        assert 2 <= r["number"] <= 10
        assert r["text"].lower().startswith(words[r["number"] - 2])
        assert r["question"].startswith("How many ") and r["question"].endswith(" in the image?")
    rwqa = pq.read_table(out / "eval" / "realworldqa.parquet").to_pylist()
    mc = [r for r in rwqa if r["answer"] in "ABCD"]
    assert mc and all("\nA. " in r["question"] and r["question"].endswith(
        "Please answer directly with only the letter of the correct option and nothing else.") for r in mc)
    short = [r for r in rwqa if r not in mc]
    assert short and all(r["question"].endswith("\nPlease answer directly with a single word or number.")
                         for r in short)


def test_pixmo_points(demo):
    out = demo[0] / "eval"
    rows = pq.read_table(out / "pixmo_points.parquet").to_pylist()
    negatives = 0
    for r in rows[:60]:
        data = (out / r["image_url"]).read_bytes()
        assert r["image_url"] == f"pixmo_points_images/{r['image_sha256']}.jpg"
        assert hashlib.sha256(data).hexdigest() == r["image_sha256"]
        w, h = Image.open(io.BytesIO(data)).size
        assert max(w, h) <= 256
        masks = np.array(r["masks"], dtype=bool)
        assert masks.shape[1:] == (h, w)
        assert len(r["points"]) <= 10
        if not r["points"]:
            negatives += 1
            assert masks.shape[0] == 1 and not masks.any()
            continue
        assert masks.shape[0] == len(r["points"])
        for p, m in zip(r["points"], masks):
            assert 0 <= p["x"] <= 100 and 0 <= p["y"] <= 100
            assert m[min(h - 1, round(p["y"] / 100 * h)), min(w - 1, round(p["x"] / 100 * w))]
    assert negatives >= 1


def test_point_answers_use_molmo_format(records):
    pattern = re.compile(r'<points( x\d+="\d+\.\d" y\d+="\d+\.\d")+ alt="[^"]+">[^<]+</points>'
                         r'|<point x="\d+\.\d" y="\d+\.\d" alt="[^"]+">[^<]+</point>')
    answers = [r["conversations"][1]["value"] for r in records if r["source"] == "gen_detection_points"]
    matched = [a for a in answers if pattern.search(a)]
    assert len(matched) >= 0.8 * len(answers)
    assert any(a.startswith("<point ") for a in matched) and any(a.startswith("<points ") for a in matched)


# ------------------------------------------------------------------------------------ eval-style instructions

def _turns(record):
    conv = record["conversations"]
    for k in range(0, len(conv), 2):
        q = conv[k]["value"].replace("<image>\n", "", 1).replace("\n<image>", "", 1)
        yield q, conv[k + 1]["value"]


def _bare(answer: str, max_words: int) -> bool:
    words = answer.split()
    return "\n" not in answer and 0 < len(words) <= max_words and not (answer.endswith(".") and len(words) > 2)


def test_instruction_strings_are_the_eval_prompts(demo):
    from mm_assets.evaluation.benchmarks import chartqa, countbench, docvqa, pixmo_points
    from mm_assets.sample_data import instructions as ins
    assert ins.DOCVQA_SUFFIX == docvqa.POST_PROMPT
    assert ins.CHARTQA_SUFFIX == chartqa.POST_PROMPT
    assert ins.COUNTBENCH_PREFIX == countbench.PRE_PROMPT
    assert ins.POINT_TEMPLATE == pixmo_points.TEMPLATE
    rwqa = pq.read_table(demo[0] / "eval" / "realworldqa.parquet").to_pylist()
    assert all(r["question"].endswith(ins.REALWORLD_MC_SUFFIX if r["answer"] in "ABCD" else ins.REALWORLD_SHORT_SUFFIX)
               for r in rwqa)


def test_training_covers_eval_prompt_instructions(records, truth):
    """Each eval prompt's instruction occurs in training turns, followed by the bare short answer."""
    from mm_assets.sample_data import instructions as ins
    low_quality = {x["ref"]["ordinal"] for x in truth["low_quality"]}
    point_tail = ins.POINT_TEMPLATE.split("{label}")[1]
    checks = {   # family: (does the question carry it, is the answer in the instructed form)
        "docvqa": (lambda q: q.endswith(ins.DOCVQA_SUFFIX), lambda a: _bare(a, 6)),
        "chartqa": (lambda q: q.endswith(ins.CHARTQA_SUFFIX), lambda a: _bare(a, 2)),
        "countbench": (lambda q: q.startswith(ins.COUNTBENCH_PREFIX), str.isdigit),
        "realworldqa_choice": (lambda q: q.endswith(ins.REALWORLD_MC_SUFFIX) and "\nA. " in q and "\nB. " in q,
                               lambda a: a in ("A", "B", "C", "D")),
        "realworldqa_short": (lambda q: q.endswith(ins.REALWORLD_SHORT_SUFFIX), lambda a: _bare(a, 2)),
        "pixmo_points": (lambda q: q.startswith("Point to ") and q.endswith(point_tail),
                         lambda a: a == ins.NOT_IN_IMAGE or re.fullmatch(r"<points? .*</points?>", a) is not None),
    }
    seen = collections.Counter()
    bad = []
    declined = 0
    for i, r in enumerate(records):
        for q, a in _turns(r):
            for name, (asks, follows) in checks.items():
                if asks(q):
                    seen[name] += 1
                    if i not in low_quality and not follows(a):
                        bad.append((name, i, q[-60:], a[:60]))
            declined += a == ins.NOT_IN_IMAGE
    assert not bad, bad[:10]
    assert all(seen[name] >= 30 for name in checks), seen
    assert declined >= 1                                    # negatives under Molmo's template ...
    assert any(a == "There are none." for r in records for _, a in _turns(r))   # ... and the older answer


def test_instructed_share_is_moderate(records):
    """About a third of the records carry an instruction; captions, code/maths and language none."""
    from mm_assets.sample_data import instructions as ins
    marks = ins.INSTRUCTION_SUFFIXES + ins.INSTRUCTION_PREFIXES
    has = [any(m in q for q, _ in _turns(r) for m in marks) for r in records]
    assert 0.2 <= sum(has) / len(records) <= 0.5
    untouched = ("gen_caption_", "gen_code_math_", "gen_language_")
    assert not any(h for h, r in zip(has, records) if r["source"].startswith(untouched))


def test_truth_and_summary_record_the_mix(demo, truth):
    from mm_assets.sample_data.scales import PlantedMix
    assert truth["mix"] == demo[1]["mix"] == PlantedMix().as_dict()


# ------------------------------------------------------------------------------------ reproducibility

def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_image_content_holds_what_each_drawn_image_shows_and_names_no_defect(demo, truth, records, tar_members):
    """MM-GEN's `drawn` generator writes from it: one line per main-source image but the leaked
    eval images (not drawn here), found by the stored image's sha256, with every question its
    drawing supports; a clean record asks one of its image's questions."""
    from mm_assets.mmgen.generate import body_of

    lines = [json.loads(line) for line in (demo[0] / "content" / "image_content.jsonl").read_text().splitlines()]
    images = _image_bytes(tar_members)
    leaked = {x["ref"]["ordinal"] for x in truth["leaked_eval_items"]}
    assert sorted(line["image"] for line in lines) == sorted(
        r["image"] for o, r in enumerate(records) if "image" in r and o not in leaked)
    for line in lines:
        assert set(line) == {"image", "image_sha256", "qas"} and line["qas"]
        assert all(set(qa) == {"question", "answer", "form", "tag"} for qa in line["qas"])
        assert hashlib.sha256(images[line["image"]]).hexdigest() == line["image_sha256"]
    altered = ({x["ref"]["ordinal"] for x in truth["low_quality"]}
               | {d["ordinal"] for g in truth["near_duplicate_groups"] for d in g["duplicates"]})
    questions = {line["image"]: {qa["question"] for qa in line["qas"]} for line in lines}
    clean = [r for o, r in enumerate(records) if "image" in r and o not in altered | leaked]
    asked = [body_of(r["conversations"][0]["value"]) in questions[r["image"]] for r in clean]
    assert len(clean) > 1000 and sum(asked) / len(asked) > 0.9, sum(asked) / len(asked)


def test_same_seed_same_bytes_for_any_worker_count(tmp_path):
    kwargs = dict(scale="demo", seed=7, _records_per_domain=40, _eval_items=12)
    one = generate_sample_data(tmp_path / "one", workers=1, **kwargs)
    two = generate_sample_data(tmp_path / "two", workers=2, **kwargs)
    assert one["records"] == two["records"] == 320
    a, b = _digests(tmp_path / "one"), _digests(tmp_path / "two")
    assert a == b and len(a) > 10
    other = generate_sample_data(tmp_path / "other", workers=1, **{**kwargs, "seed": 8})
    assert _digests(tmp_path / "other")["main/mammoth_si.json"] != a["main/mammoth_si.json"]
    assert other["records"] == 320


def test_a_count_scene_can_be_drawn_without_distractors():
    """benchmarks/count_probe.py's `--no-distractors`: every object is a target; the default
    draw (0–4 distractors from the record's stream) is unchanged."""
    from mm_assets.sample_data.canvas import Sizing
    from mm_assets.sample_data.families import detection
    from mm_assets.sample_data.rng import rng_for

    sizing = Sizing(192, 448)
    alone = detection.draw_count(rng_for(0, "t", 1), sizing, count=7, distractors=0)
    assert len(alone.spec["targets"]) == 7 and alone.spec["others"] == []
    default = detection.draw_count(rng_for(0, "t", 2), sizing, count=3)
    again = detection.draw_count(rng_for(0, "t", 2), sizing, count=3, distractors=None)
    assert default.image.tobytes() == again.image.tobytes()
    assert sum(len(detection.draw_count(rng_for(0, "t", k), sizing, count=3).spec["others"]) for k in range(20)) > 0
