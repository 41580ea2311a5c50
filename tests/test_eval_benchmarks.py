"""Benchmark registry: prompts match the reference templates and `process` parses and scores."""

import ast
from pathlib import Path

import numpy as np
import pytest

from mm_assets.evaluation import benchmarks
from mm_assets.evaluation.benchmarks import BENCHMARKS, Benchmark, get
from mm_assets.sources.eval_sets import _png
from mm_assets.taxonomy import BENCHMARKS as TAXONOMY_BENCHMARKS

PERFECT = 2 / (2 + 1e-10)

RWQA_MC = (
    "Which way is the arrow facing?\nA. The arrow is facing right.\nB. The arrow is facing left.\n"
    "Please answer directly with only the letter of the correct option and nothing else."
)


def test_registry_names_match_the_taxonomy():
    assert set(BENCHMARKS) == set(TAXONOMY_BENCHMARKS) == {"countbench", "docvqa", "chartqa", "realworldqa", "pixmo_points"}
    for name, bench in BENCHMARKS.items():
        assert isinstance(bench, Benchmark) and bench.name == name and get(name) is bench
        assert bench.aggregate == "mean" and bench.prompt_version and bench.metric_version
    with pytest.raises(KeyError, match="unknown benchmark"):
        get("mmmu")


def test_benchmark_is_frozen():
    with pytest.raises(AttributeError):
        get("docvqa").name = "x"


@pytest.mark.parametrize("name,item,prompt", [
    ("docvqa", {"question": "What is the date on the memo?"},
     "What is the date on the memo?\nAnswer the question using a single word or phrase."),
    ("chartqa", {"question": "What is the value of Japan in 2019?"},
     "What is the value of Japan in 2019?\nAnswer the question with a single word."),
    ("countbench", {"question": "  How many dogs are in the image? "},
     "Look at the image carefully and count the objects. Answer with just a number, without any "
     "additional text. How many dogs are in the image?"),
    ("realworldqa", {"question": "\n" + RWQA_MC + "\n"}, RWQA_MC),  # verbatim, trimmed
    ("pixmo_points", {"question": "the red mugs"},
     "Point to the red mugs\nPlease say 'This isn't in the image.' if it is not in the image."),
])
def test_prompt_templates(name, item, prompt):
    assert get(name).doc_to_text(item) == prompt


@pytest.mark.parametrize("name,item,prediction,parsed,score", [
    ("docvqa", {"answers": ["1995", "March 1995"]}, " March 1995\n", "March 1995", 1.0),
    ("docvqa", {"answers": ["1995", "March 1995"]}, "1996", "1996", 0.75),
    ("docvqa", {"answers": ["1995"]}, "The memo is dated 1995.", "The memo is dated 1995.", 0.0),
    ("chartqa", {"answers": ["0.17"]}, "17%", "17%", 1.0),
    ("chartqa", {"answers": ["17"]}, "17.8\n", "17.8", 1.0),  # trimmed; 0.8/17 = 4.7%
    ("chartqa", {"answers": ["Yes"]}, "yes", "yes", 1.0),
    ("countbench", {"number": 5}, "Five", "5", 1.0),
    ("countbench", {"number": 5}, "5 dogs", "5 dogs", 0.0),
    ("realworldqa", {"answers": ["B"], "question": RWQA_MC}, "The answer is B.", "B", 1.0),
    ("realworldqa", {"answers": ["B"], "question": RWQA_MC}, "b", "", 0.0),
    ("realworldqa", {"answers": ["Yes"], "question": "Is it open?\nPlease answer directly with a single word or number."},
     "Yes.", "yes", 1.0),
])
def test_process(name, item, prediction, parsed, score):
    got_parsed, got_score = get(name).process(prediction, item)
    assert got_parsed == parsed
    assert got_score == pytest.approx(score)


def test_chartqa_tolerance_edge_through_process():
    # 0.9 / 17 = 5.3% > 5%: wrong, while 0.8 / 17 = 4.7% is right.
    assert get("chartqa").process("17.9", {"answers": ["17"]})[1] == 0.0
    assert get("chartqa").process("17.8", {"answers": ["17"]})[1] == 1.0


def test_realworldqa_reports_head_and_legacy():
    item = {"answers": ["B"], "question": RWQA_MC}
    # HEAD takes the end letter; the legacy filter keeps "The answer is B" and fails.
    assert get("realworldqa").item_scores("The answer is B.", item) == {
        "realworldqa_accuracy": 1.0, "realworldqa_accuracy_legacy": 0.0}
    # A lowercase letter: the other way round.
    assert get("realworldqa").item_scores("b", item) == {
        "realworldqa_accuracy": 0.0, "realworldqa_accuracy_legacy": 1.0}


def _pixmo_item(points, masks):
    return {"question": "dog", "width": 100, "height": 50, "points_px": points,
            "masks_png": [_png(m) for m in masks]}


def _box(x0, x1, y0, y1):
    m = np.zeros((50, 100), bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


def test_pixmo_points_process_decodes_masks_and_scores_f1():
    item = _pixmo_item([[20.0, 10.0], [70.0, 30.0]], [_box(15, 25, 5, 15), _box(65, 75, 25, 35)])
    bench = get("pixmo_points")
    both = '<points x1="20.0" y1="20.0" x2="70.0" y2="60.0" alt="dog">dog</points>'
    assert bench.process(both, item) == ("[[20.0, 10.0], [70.0, 30.0]]", pytest.approx(PERFECT))
    one = '<point x="20.0" y="20.0" alt="dog">dog</point>'
    assert bench.process(one, item) == ("[[20.0, 10.0]]", pytest.approx(1 / (1.5 + 1e-10)))
    assert bench.item_scores(one, item) == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 1 / (1.5 + 1e-10)})
    # Points read but the format gate fails: parsed shows them, the score is 0.
    assert bench.process("Sure! " + one, item) == ("[[20.0, 10.0]]", 0.0)


def test_pixmo_points_negative_item():
    item = _pixmo_item([], [np.zeros((50, 100), bool)])
    bench = get("pixmo_points")
    assert bench.process("There are none.", item) == ("[]", 1.0)
    assert bench.item_scores("(20.0, 20.0)", item) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_no_dagster_import_in_evaluation_modules():
    """Algorithms stay plain Python; only the stage's thin `assets.py` talks to Dagster."""
    root = Path(benchmarks.__file__).resolve().parent.parent
    for path in root.rglob("*.py"):
        if path.name == "assets.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n and n.split(".")[0] == "dagster" for n in names), path
