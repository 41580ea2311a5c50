"""Canaries (issue #7): the canary file, canaries from the planted truth, recall and lift."""

import polars as pl
import pytest

from mm_assets.canaries import canaries_from_truth, canary_report, load_canaries, parse_canaries


def test_canary_file_comments_blank_lines_and_unknown_ids(tmp_path):
    path = tmp_path / "canaries.txt"
    path.write_text("# known-bad rows, kept by hand\n\nabc123\n  def456   # garbled answer\nabc123\n"
                    "\n# gone upstream:\nzzz999\n", encoding="utf-8")
    assert parse_canaries(path.read_text()) == ["abc123", "def456", "zzz999"]
    c = load_canaries(str(path), known_ids=["abc123", "def456", "other"])
    assert c.ids == ("abc123", "def456", "zzz999") and c.unknown == ("zzz999",)
    assert load_canaries(str(path)).unknown == ()


def test_canary_report_recall_removal_and_lift():
    ids = [f"s{i:03d}" for i in range(100)]
    dropped = set(ids[:20])
    decisions = pl.DataFrame({"sample_id": ids, "decision": ["drop" if i in dropped else "keep" for i in ids]})
    canaries = ids[:6] + ids[50:54] + ["not-in-pool"]          # 6 of 10 present canaries dropped
    rep = canary_report(decisions, canaries)
    assert rep["canaries"] == 10 and rep["found"] == 6 and rep["missing"] == 1
    assert rep["recall"] == pytest.approx(0.6) and rep["removal_fraction"] == pytest.approx(0.2)
    assert rep["lift"] == pytest.approx(3.0)
    assert rep["samples"] == 100 and rep["removed"] == 20
    # removing at random-like rates: lift 1
    assert canary_report(decisions, ids[:10] + ids[20:60])["lift"] == pytest.approx(1.0)
    # nothing removed: no lift; no canary: no recall
    keep_all = decisions.with_columns(pl.lit("keep").alias("decision"))
    assert canary_report(keep_all, canaries)["lift"] is None
    assert canary_report(decisions, [])["recall"] is None
    # a rewrite or up-sample is not a removal
    other = decisions.with_columns(pl.when(pl.col("decision") == "drop").then(pl.lit("rewrite"))
                                   .otherwise(pl.col("decision")).alias("decision"))
    assert canary_report(other, canaries)["found"] == 0


def test_canaries_from_truth_map_planted_refs_to_sample_ids():
    truth = {"low_quality": [
        {"ref": {"file": "main/mammoth_si.json", "ordinal": 4, "id": 7, "domain": "chart"},
         "kind": "unrelated_question"},
        {"ref": {"file": "main/mammoth_si.json", "ordinal": 9, "id": 2, "domain": "ocr"}, "kind": "garbled_answer"},
        {"ref": {"file": "main/mammoth_si.json", "ordinal": 11, "id": 3, "domain": "ocr"}, "kind": "wrong_answer"},
    ]}
    samples = pl.DataFrame({"sample_id": ["a", "b", "c", "d"], "source_name": ["main", "main", "dirty", "main"],
                            "ordinal": [4, 9, 11, 12]})
    # ordinal 11 of "main" was quarantined (only the dirty source has an 11): skipped
    assert canaries_from_truth(truth, samples) == ["a", "b"]
    assert canaries_from_truth(truth, samples, kinds=["garbled_answer"]) == ["b"]


def test_canaries_from_generated_truth(sample_data_small):
    truth, samples = sample_data_small
    ids = canaries_from_truth(truth, samples)
    assert len(ids) == len(truth["low_quality"]) and len(set(ids)) == len(ids)
    by_id = {r["sample_id"]: r for r in samples.iter_rows(named=True)}
    for e, sid in zip(truth["low_quality"], ids):
        assert by_id[sid]["domain"] == e["ref"]["domain"]
        assert by_id[sid]["original_id"] == str(e["ref"]["id"])


@pytest.fixture(scope="module")
def sample_data_small(tmp_path_factory):
    import json

    from mm_assets.sample_data import generate_sample_data
    from mm_assets.sources.ingest import ingest_domain
    from mm_assets.sources.samples_table import build_samples_table
    from mm_assets.sources.source_scan import SourceSpec, scan_sources
    from mm_assets.storage import Storage
    from mm_assets.taxonomy import DOMAINS

    root = tmp_path_factory.mktemp("canary_data")
    generate_sample_data(root, scale="demo", seed=0, workers=1, _records_per_domain=24, _eval_items=6)
    out = Storage(str(tmp_path_factory.mktemp("canary_ingest")))
    manifest = scan_sources([SourceSpec("main", str(root / "main" / "mammoth_si.json"), str(root / "main" / "images"))],
                            str(root / "source_to_domain.json"), out.child("source"))
    tables = []
    for d in DOMAINS:
        m = ingest_domain(out.child("source"), manifest, d, out.child(f"raw/{d}"))
        tables.append(build_samples_table(out.child(f"raw/{d}"), m))
    truth = json.loads((root / "truth" / "planted_truth.json").read_text())
    return truth, pl.concat(tables)
