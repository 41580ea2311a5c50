"""Perplexity filtering (issue #7): trusted pool, reference model, scores, decisions.

The scoring tests use a tiny LLaVA on a toy task whose answers depend on the image (the
colour of a flat image), so a briefly trained reference model must look at the image.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS  # noqa: E402
from mm_assets.perplexity.decide import keep_rates_by_domain, perplexity_decisions  # noqa: E402
from mm_assets.perplexity.reference import train_reference_model  # noqa: E402
from mm_assets.perplexity.score import nll_of_samples, score_shards, score_with_model  # noqa: E402
from mm_assets.training.data import IGNORE_INDEX, encode_conversation  # noqa: E402
from mm_assets.training.trainer import load_model_and_processor  # noqa: E402
from shard_files import write_shards  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
QUESTIONS = ("What colour is the picture?", "Which colour fills the image?", "Name the colour shown.")
TEXT_QA = (("What colour is a banana?", "A banana is yellow."), ("What colour is grass?", "Grass is green."),
           ("What colour is the sky?", "The sky is blue."))


def _png(rgb, rng: random.Random) -> bytes:
    from PIL import Image

    noise = np.random.default_rng(rng.randint(0, 2**31)).integers(-12, 13, size=(32, 32, 3))
    arr = np.clip(np.array(rgb)[None, None, :] + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def colour_samples(n: int, seed: int, prefix: str) -> list[tuple[str, dict[str, bytes]]]:
    """Image rows asking for the image's colour (every 6th row is a text-only question)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = f"{prefix}{i:04d}"
        if i % 6 == 5:
            q, a = TEXT_QA[i % len(TEXT_QA)]
            rec = {"sample_id": key, "domain": "language", "conversations": [
                {"from": "human", "value": q}, {"from": "gpt", "value": a}]}
            out.append((key, {"json": json.dumps(rec).encode()}))
            continue
        name = rng.choice(sorted(COLOURS))
        rec = {"sample_id": key, "domain": "general", "conversations": [
            {"from": "human", "value": "<image>\n" + rng.choice(QUESTIONS)},
            {"from": "gpt", "value": f"The picture is {name}."}]}
        out.append((key, {"json": json.dumps(rec).encode(), "png": _png(COLOURS[name], rng)}))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A reference model trained briefly (20 steps) on 48 toy samples, and 36 held-out samples to score."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("perplexity")
    train_shards = write_shards(root / "trusted", colour_samples(48, seed=0, prefix="t"), per_shard=30)
    score_shards_ = write_shards(root / "pool", colour_samples(36, seed=1, prefix="p"), per_shard=20)
    model_dir = train_reference_model(train_shards, root / "reference", seed=0, epochs=2, lr=5e-3,
                                      batch_size=4, max_len=64, vocab_size=400)
    model, processor = load_model_and_processor(model_dir)
    model.eval()
    return {"root": root, "model_dir": model_dir, "model": model, "processor": processor,
            "pool": score_shards_}


def hand_nll(model, sample) -> float:
    """Mean NLL of the labelled tokens, the sample run alone without any mask or packing."""
    kw = {"input_ids": sample.input_ids[None]}
    if sample.pixel_values is not None:
        kw["pixel_values"] = sample.pixel_values
    with torch.no_grad():
        logits = model(**kw).logits[0].double()
    target = sample.labels[1:]
    pos = (target != IGNORE_INDEX).nonzero().squeeze(1)
    logp = torch.log_softmax(logits[:-1], dim=-1)
    return float(-logp[pos, target[pos]].mean())


def _image(name: str):
    from PIL import Image

    return Image.new("RGB", (32, 32), COLOURS[name])


# ----------------------------------------------------------------------------- trusted pool


def test_trusted_pool_is_clean_fresh_and_ingests(tmp_path):
    from mm_assets.sample_data import generate_sample_data
    from mm_assets.sample_data.trusted import write_trusted_pool
    from mm_assets.sample_data.scales import resolve_scale
    from mm_assets.sources.ingest import ingest_domain
    from mm_assets.sources.source_scan import SourceSpec, scan_sources
    from mm_assets.storage import Storage
    from mm_assets.taxonomy import DOMAINS

    summary = generate_sample_data(tmp_path / "data", scale="demo", seed=3, workers=1,
                                   _records_per_domain=24, _eval_items=6)
    paths = summary["paths"]
    trusted = json.loads(Path(paths["trusted"]).read_text())
    main = json.loads(Path(paths["main"]).read_text())
    assert summary["trusted_records"] == len(trusted) == 4 * len(DOMAINS)
    main_convs = {json.dumps(r["conversations"]) for r in main}
    assert not any(json.dumps(r["conversations"]) in main_convs for r in trusted), "fresh draws, not copies"
    # deterministic for (scale, seed), independent of the main run
    again = write_trusted_pool(tmp_path / "again", resolve_scale("demo", 24, 6), 3)
    assert Path(again["json"]).read_bytes() == Path(paths["trusted"]).read_bytes()
    out = Storage(str(tmp_path / "ingest"))
    manifest = scan_sources([SourceSpec("trusted", paths["trusted"], paths["trusted_images"])],
                            paths["source_to_domain"], out.child("source"))
    assert manifest["quarantine"]["rows"] == 0
    for d in DOMAINS:
        m = ingest_domain(out.child("source"), manifest, d, out.child(f"raw/{d}"))
        assert m["samples"] == 4 and m["quarantined"] == 0, d


# ----------------------------------------------------------------------------- scoring


def test_scores_count_only_assistant_tokens_and_match_a_hand_computation(reference):
    model, proc = reference["model"], reference["processor"]
    answer = "The picture is red."
    a = encode_conversation(proc, [{"from": "human", "value": "<image>\nWhat colour is the picture?"},
                                   {"from": "gpt", "value": answer}], [_image("red")])
    b = encode_conversation(proc, [{"from": "human", "value": "<image>\nPlease tell me, in one short "
                                                               "sentence, which colour fills this image?"},
                                   {"from": "gpt", "value": answer}], [_image("red")])
    # another prompt: other context tokens, the same counted tokens (the answer and its EOS)
    assert a.length != b.length
    assert a.labels[a.labels != IGNORE_INDEX].tolist() == b.labels[b.labels != IGNORE_INDEX].tolist()
    expected = proc.tokenizer(" " + answer + "</s>", add_special_tokens=False)["input_ids"]
    assert a.labels[a.labels != IGNORE_INDEX].tolist() == expected
    # image tokens and the prompt are never counted
    assert (a.labels[a.input_ids == model.config.image_token_id] == IGNORE_INDEX).all()
    (sum_a, n_a), (sum_b, n_b) = nll_of_samples(model, [a, b], pad_id=0)
    assert n_a == n_b == len(expected)
    assert sum_a / n_a == pytest.approx(hand_nll(model, a), abs=1e-4)
    assert sum_b / n_b == pytest.approx(hand_nll(model, b), abs=1e-4)


def test_packed_batched_scores_equal_each_sample_alone(reference):
    from mm_assets.training.data import load_dataset

    model, proc = reference["model"], reference["processor"]
    df = score_with_model(model, proc, reference["pool"], batch_size=2, pack_len=128, chunk_size=7)
    encoded, skipped = load_dataset(reference["pool"], proc)
    assert not skipped and df.height == len(encoded) == 36
    assert df["reason"].null_count() == 36 and df["nll"].null_count() == 0
    assert df["has_image"].sum() == 30
    for s, row in zip(encoded, df.iter_rows(named=True)):
        assert row["sample_id"] == s.sample_id and row["assistant_tokens"] == s.n_targets
        assert row["nll"] == pytest.approx(hand_nll(model, s), abs=1e-4)
    # the file-level entry point gives the same table
    again = score_shards(reference["model_dir"], reference["pool"], batch_size=8, num_threads=1)
    assert again["sample_id"].to_list() == df["sample_id"].to_list()
    assert np.allclose(again["nll"].to_numpy(), df["nll"].to_numpy(), atol=1e-4)


def test_scores_depend_on_the_image(reference):
    """Shuffling images across the image rows raises the trained reference's mean NLL."""
    model, proc = reference["model"], reference["processor"]

    def shuffle_images(encoded):
        idx = [i for i, s in enumerate(encoded) if s.pixels is not None]
        perm = idx[1:] + idx[:1]            # a derangement: every image row gets another's image
        pixels = [encoded[j].pixels for j in perm]
        for i, p in zip(idx, pixels):
            encoded[i].pixels = p
        return encoded

    plain = score_with_model(model, proc, reference["pool"])
    shuffled = score_with_model(model, proc, reference["pool"], transform=shuffle_images)
    img = pl.col("has_image")
    mean_plain = plain.filter(img)["nll"].mean()
    mean_shuffled = shuffled.filter(img)["nll"].mean()
    assert mean_shuffled > mean_plain + 0.1, (mean_plain, mean_shuffled)
    # text-only rows carry no image: unaffected
    assert np.allclose(plain.filter(~img)["nll"].to_numpy(), shuffled.filter(~img)["nll"].to_numpy(), atol=1e-5)


def test_unencodable_records_are_returned_with_a_reason(reference, tmp_path):
    good = colour_samples(3, seed=5, prefix="g")
    no_image = ("bad1", {"json": json.dumps({"sample_id": "bad1", "domain": "general", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}]}).encode()})
    no_answer = ("bad2", {"json": json.dumps({"sample_id": "bad2", "domain": "general", "conversations": [
        {"from": "human", "value": "Hello?"}]}).encode()})
    shards = write_shards(tmp_path / "mixed", [good[0], no_image, good[1], no_answer, good[2]], per_shard=10)
    df = score_with_model(reference["model"], reference["processor"], shards)
    assert df["sample_id"].to_list() == ["g0000", "bad1", "g0001", "bad2", "g0002"]
    bad = {r["sample_id"]: r for r in df.filter(pl.col("nll").is_null()).iter_rows(named=True)}
    assert set(bad) == {"bad1", "bad2"}
    assert bad["bad1"]["reason"].startswith("image_token_mismatch")
    assert bad["bad2"]["reason"].startswith("no_assistant_turn")
    assert df.filter(pl.col("nll").is_not_null())["reason"].null_count() == 3


# ----------------------------------------------------------------------------- decisions


def _scores(n: int = 101, seed: int = 0) -> pl.DataFrame:
    rng = random.Random(seed)
    domains = ("chart", "ocr", "language")
    # rounded NLLs: plenty of ties, which must be broken by sample_id
    return pl.DataFrame({"sample_id": [f"s{i:04d}" for i in rng.sample(range(1000), n)],
                         "domain": [domains[i % 3] for i in range(n)],
                         "nll": [round(rng.uniform(0.5, 4.0), 1) for _ in range(n)]})


def test_keep_fraction_is_exact_global_and_ties_broken_by_sample_id():
    scores = _scores()
    dec = perplexity_decisions(scores, keep_fraction=0.37, params_hash="abc")
    assert dec.columns == list(STEP_DECISION_COLUMNS)
    assert dec.height == 101 and (dec["decision"] == "keep").sum() == round(0.37 * 101)
    assert set(dec["params_hash"]) == {"abc"} and dec["related_id"].null_count() == 101
    ordered = scores.sort(["nll", "sample_id"])["sample_id"].to_list()
    kept = set(dec.filter(pl.col("decision") == "keep")["sample_id"])
    assert kept == set(ordered[:37])
    threshold = dec.filter(pl.col("decision") == "keep")["score"].max()
    assert dec.filter(pl.col("decision") == "drop")["score"].min() >= threshold
    dropped = dec.filter((pl.col("decision") == "drop") & (pl.col("score") > threshold)).row(0, named=True)
    assert dropped["reason"] == f"nll {dropped['score']:.3f} above the 37% keep threshold {threshold:.3f} (whole pool)"
    # the same scores in another row order give the same decisions
    again = perplexity_decisions(scores.reverse(), keep_fraction=0.37, params_hash="abc")
    assert again.equals(dec)
    assert (perplexity_decisions(scores, keep_fraction=0.0)["decision"] == "drop").all()
    assert (perplexity_decisions(scores, keep_fraction=1.0)["decision"] == "keep").all()


def test_slices_partition_the_pool():
    scores = _scores(100)
    kept = {s: set(perplexity_decisions(scores, slice=s).filter(pl.col("decision") == "keep")["sample_id"])
            for s in ("low", "mid", "high")}
    assert [len(kept[s]) for s in ("low", "mid", "high")] == [33, 34, 33]
    assert kept["low"] | kept["mid"] | kept["high"] == set(scores["sample_id"])
    assert not (kept["low"] & kept["mid"]) and not (kept["mid"] & kept["high"]) and not (kept["low"] & kept["high"])
    nll = dict(zip(scores["sample_id"], scores["nll"]))
    assert max(nll[s] for s in kept["low"]) <= min(nll[s] for s in kept["mid"])
    assert max(nll[s] for s in kept["mid"]) <= min(nll[s] for s in kept["high"])
    with pytest.raises(ValueError):
        perplexity_decisions(scores, keep_fraction=0.5, slice="low")
    with pytest.raises(ValueError):
        perplexity_decisions(scores, slice="middle")


def test_unscored_rows_are_kept_with_their_reason_and_rates_per_domain():
    scores = _scores(30).with_columns(pl.lit(None, pl.String).alias("reason"))
    scores = pl.concat([scores, pl.DataFrame({"sample_id": ["zz1"], "domain": ["ocr"], "nll": [None],
                                              "reason": ["bad_image: cannot identify image file"]},
                                             schema=scores.schema)])
    dec = perplexity_decisions(scores, keep_fraction=0.5)
    row = dec.filter(pl.col("sample_id") == "zz1").row(0, named=True)
    assert row["decision"] == "keep" and row["reason"] == "not scored: bad_image: cannot identify image file"
    assert row["score"] is None
    assert (dec.filter(pl.col("score").is_not_null())["decision"] == "keep").sum() == 15
    rates = keep_rates_by_domain(dec)
    assert sum(r["samples"] for r in rates.values()) == 31
    assert sum(r["kept"] for r in rates.values()) == 16
    assert rates["ocr"]["keep_rate"] == rates["ocr"]["kept"] / rates["ocr"]["samples"]
    # within each domain: every domain keeps its own half
    per_domain = keep_rates_by_domain(perplexity_decisions(_scores(30), keep_fraction=0.5, by_domain=True))
    assert {d: r["kept"] for d, r in per_domain.items()} == {"chart": 5, "language": 5, "ocr": 5}
