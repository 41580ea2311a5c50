"""Rephrasing of the text part: template back end, validation, cache, resume after a kill,
a tiny random causal LM through the transformers back end, the vLLM back end's import guard."""

from __future__ import annotations

import json
import random
import sys
import textwrap

import polars as pl
import pytest

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS
from mm_assets.rephrase import (RephraseCache, TemplateParaphraseBackend, rephrase_decisions, rephrase_samples,
                                rewrites_by_sample, rewritten_record, select_for_rephrase, validate_rewrite)
from mm_assets.rephrase.backends import HFRephraseBackend, VLLMRephraseBackend, load_rephraser, model_fingerprint
from mm_assets.rephrase.run import split_placeholders, text_units
from mm_assets.rephrase.validate import reason_code
from mm_assets.storage import Storage
from blocked_child import kill_when_blocked



def generated_records(seeds=range(4)) -> list[tuple[str, dict]]:
    """Conversations the look-alike generator writes, every family, a few seeds."""
    from mm_assets.sample_data.canvas import Sizing
    from mm_assets.sample_data.conversations import build
    from mm_assets.sample_data.families import FAMILIES

    records = []
    for key, fam in FAMILIES.items():
        for seed in seeds:
            rng = random.Random(seed)
            drawn = fam.draw(rng, Sizing(96, 128))
            conv = build(drawn.qas[:3], fam.directory is not None, rng)
            records.append((f"{key}-{seed}", {"id": f"{key}-{seed}", "conversations": conv, "source": fam.source}))
    return records


def numbered_records(n: int) -> list[tuple[str, dict]]:
    """`n` single-turn image records with distinct questions."""
    return [(f"s{i:04d}", {"id": i, "image": f"img/{i}.jpg",
                           "conversations": [{"from": "human", "value": f"<image>\nWhat is the value of bar {i}?"},
                                             {"from": "gpt", "value": str(3 * i + 1)}],
                           "source": "toy"}) for i in range(n)]


class ScriptedBackend:
    """Returns fixed rewrites (to drive validation); counts what it is asked to generate."""

    name, model_id, style, prompt_version = "scripted", "scripted-model", "paraphrase", "scripted.v1"

    def __init__(self, mapping: dict[str, str]):
        self.mapping = mapping
        self.asked: list[str] = []

    def rephrase(self, texts):
        self.asked += texts
        return [self.mapping[t] for t in texts]


# ----------------------------------------------------------------------------- template + validation


def test_template_backend_is_deterministic_and_passes_validation_on_generated_questions(tmp_path):
    records = generated_records()
    backend = TemplateParaphraseBackend()
    bodies = [u.body for sid, rec in records for u in text_units(sid, rec, "question") if u.skip is None]
    assert len(set(bodies)) > 60
    assert backend.rephrase(bodies) == backend.rephrase(list(bodies)) == TemplateParaphraseBackend().rephrase(bodies)
    results, stats = rephrase_samples(records, backend, Storage(str(tmp_path / "cache")), batch_size=16)
    assert stats["rejected"] == {}, results.filter(~pl.col("ok")).select("original", "generated", "reason").rows()
    assert stats["rewritten"] == stats["turns"] == results.height
    for row in results.iter_rows(named=True):       # placeholders stay where they were
        assert row["rewritten"] != row["original"]
        assert split_placeholders(row["rewritten"])[0] == split_placeholders(row["original"])[0]
        assert split_placeholders(row["rewritten"])[2] == split_placeholders(row["original"])[2]
    # answers are never touched by a question paraphrase
    rewrites = rewrites_by_sample(results)
    for sid, rec in records:
        new = rewritten_record(rec, rewrites.get(sid, {}))
        assert [t["value"] for t in new["conversations"] if t["from"] == "gpt"] == \
            [t["value"] for t in rec["conversations"] if t["from"] == "gpt"]


@pytest.mark.parametrize("original, rewritten, kwargs, code", [
    ("<image>\nWhat is the sum of 42 and 7?", "<image>\nWhat do 41 and 7 add up to?", {}, "lost_number"),
    ("<image>\nWhat is the sum of 42 and 7?", "What do 42 and 7 add up to?", {}, "image_placeholder"),
    ("<image>\nWhich city has the lowest share?", "<image>\nWhich city, Denver, has the lowest share?",
     {"answers": ["Denver"]}, "answer_leak"),
    ("The apples cost $11.00. The answer is $29.00.", "The change comes to $29.", {"role": "answer",
     "answers": ["$29.00"]}, "lost_answer"),
    ("How many dogs are there?", "How many of the 3 dogs are there?", {}, "new_number"),
    ("What is the sum of Japan and Chile?", "What is the sum of Japan and Peru?", {}, "lost_name"),
    ('How many vowels are in the word "window"?', "How many vowels does the word door have?", {}, "lost_quote"),
    ("What colour is the cross?", "The cross is pink.", {}, "not_a_question"),
    ("What colour is the cross?", "  ", {}, "empty"),
    ("What colour is the cross?", "what colour is the cross", {}, "unchanged"),
    ("Describe the image in detail.", "zq blorp vex tanu grel fip.", {}, "low_overlap"),
    ("Describe the image in detail.", "ASSISTANT: Describe the picture in detail.", {}, "chat_markup"),
    ("Describe the image in detail.", "Describe the image " + "in great detail " * 20, {}, "too_long"),
])
def test_validate_rewrite_rejects(original, rewritten, kwargs, code):
    ok, reason = validate_rewrite(original, rewritten, **kwargs)
    assert not ok and reason_code(reason) == code, reason


def test_validate_rewrite_accepts_faithful_rewrites():
    assert validate_rewrite("<image>\nWhat is the sum of Japan and Chile?",
                            "<image>\nWhat do Japan and Chile add up to?", answers=["48.3"]) == (True, "ok")
    assert validate_rewrite("Area = 15 x 25 = 375 square metres. The answer is 375.",
                            "Multiplying 15 by 25 gives 375 square metres, so the answer is 375.",
                            role="answer", answers=["375"]) == (True, "ok")


def test_rejected_rewrites_keep_the_original_and_the_reason_reaches_the_ledger(tmp_path):
    records = [
        ("a", {"id": "a", "conversations": [{"from": "human", "value": "<image>\nHow many cats are in the image?"},
                                            {"from": "gpt", "value": "42"}]}),
        ("b", {"id": "b", "conversations": [{"from": "human", "value": "<image>\nWhat colour is the cross?"},
                                            {"from": "gpt", "value": "pink"}]}),
        ("c", {"id": "c", "conversations": [{"from": "human", "value": "What is 12 times 3?"},
                                            {"from": "gpt", "value": "36"},
                                            {"from": "human", "value": "And 12 times 4?"},
                                            {"from": "gpt", "value": "48"}]}),
        ("d", {"id": "d", "conversations": [{"from": "human", "value": "<image>\nPoint to the <b>hearts</b>."},
                                            {"from": "gpt", "value": "<points x1=\"1\" y1=\"2\">hearts</points>"}]}),
    ]
    backend = ScriptedBackend({
        "How many cats are in the image?": "How many cats does the image hold, 42?",     # leaks the answer
        "What colour is the cross?": "<image> Which colour does the cross have?",          # extra placeholder
        "What is 12 times 3?": "What do you get when you multiply 12 by 3?",               # fine
        "And 12 times 4?": "And multiplied by 4?",                                          # loses 12
    })
    results, stats = rephrase_samples(records, backend, Storage(str(tmp_path / "cache")), batch_size=2)
    assert stats["rejected"] == {"answer_leak": 1, "image_placeholder": 1, "lost_number": 1}
    assert stats["rewritten"] == 1 and stats["samples_rewritten"] == 1
    assert sum(stats["skipped"].values()) == 1 and "Point to the <b>hearts</b>." not in backend.asked
    assert results.filter(~pl.col("ok"))["rewritten"].null_count() == 4       # 3 rejected + 1 skipped

    rewrites = rewrites_by_sample(results)
    assert rewrites == {"c": {0: "What do you get when you multiply 12 by 3?"}}
    for sid, rec in records:
        new = rewritten_record(rec, rewrites.get(sid, {}))
        if sid != "c":
            assert json.dumps(new) == json.dumps(rec)
    new_c = rewritten_record(records[2][1], rewrites["c"])
    assert [t["value"] for t in new_c["conversations"]][1:] == ["36", "And 12 times 4?", "48"]

    decisions = rephrase_decisions([s for s, _ in records], results, fraction=1.0, domain="toy", params_hash="p1")
    assert decisions.columns == list(STEP_DECISION_COLUMNS)
    by = {r["sample_id"]: r for r in decisions.iter_rows(named=True)}
    assert by["a"]["decision"] == "keep" and "answer_leak" in by["a"]["reason"]
    assert by["b"]["decision"] == "keep" and "image_placeholder" in by["b"]["reason"]
    assert by["c"]["decision"] == "rewrite" and "turn 2: lost_number: 12" in by["c"]["reason"]
    assert by["d"]["decision"] == "keep" and by["d"]["reason"].startswith("not_rephrasable")


def test_rewritten_record_is_byte_stable_and_guards_placeholders():
    rec = {"id": "x", "image": "i.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                                                          {"from": "gpt", "value": "A cat."}], "source": "s", "z": [1]}
    new = rewritten_record(rec, {0: "<image>\nWhat's it?"})
    assert list(new) == list(rec) and new["z"] is rec["z"] and new["conversations"][1] is rec["conversations"][1]
    assert json.dumps(new) == json.dumps(rec).replace("What is it?", "What's it?")
    assert rec["conversations"][0]["value"] == "<image>\nWhat is it?"      # the input is not mutated
    with pytest.raises(ValueError, match="<image>"):
        rewritten_record(rec, {0: "What is it?"})
    with pytest.raises(ValueError, match="does not exist"):
        rewritten_record(rec, {5: "x"})


def test_selection_is_stable_exact_and_nested():
    ids = [f"id{i}" for i in range(1000)]
    s30 = select_for_rephrase(ids, 0.3)
    assert len(s30) == 300 and s30 == select_for_rephrase(list(reversed(ids)), 0.3)
    assert s30 <= select_for_rephrase(ids, 0.5)
    assert s30 != select_for_rephrase(ids, 0.3, salt="other")
    decisions = rephrase_decisions(ids, pl.DataFrame(schema={"sample_id": pl.String, "turn": pl.Int32,
                                                             "role": pl.String, "original": pl.String,
                                                             "generated": pl.String, "rewritten": pl.String,
                                                             "ok": pl.Boolean, "reason": pl.String,
                                                             "cached": pl.Boolean}),
                                   fraction=0.3, domain="d", params_hash="h")
    assert decisions.filter(pl.col("reason").str.starts_with("not selected")).height == 700


# ----------------------------------------------------------------------------- cache and resume


def test_cache_second_run_generates_nothing_and_survives_compaction(tmp_path):
    records = numbered_records(30)
    store = Storage(str(tmp_path / "cache"))
    first, s1 = rephrase_samples(records, TemplateParaphraseBackend(), store, batch_size=7)
    assert (s1["generated"], s1["from_cache"], s1["batches"]) == (30, 0, 5)
    cache = RephraseCache(store, TemplateParaphraseBackend.model_id, TemplateParaphraseBackend.prompt_version)
    assert len(cache.chunks()) == 5 and len(cache) == 30
    second, s2 = rephrase_samples(records, TemplateParaphraseBackend(), store, batch_size=7)
    assert (s2["generated"], s2["from_cache"], s2["batches"]) == (0, 30, 0)
    assert second["cached"].all() and second.drop("cached").equals(first.drop("cached"))
    assert cache.compact() == 5 and len(cache.chunks()) == 1 and len(cache) == 30
    _, s3 = rephrase_samples(records, TemplateParaphraseBackend(), store, batch_size=7)
    assert s3["generated"] == 0
    # another prompt version or model is another namespace
    other = ScriptedBackend({r["conversations"][0]["value"][8:]: "x" for _, r in records})
    _, s4 = rephrase_samples(records[:3], other, store, batch_size=7)
    assert s4["generated"] == 3


CHILD = textwrap.dedent("""
    import json, pathlib, sys, time
    from mm_assets.rephrase import TemplateParaphraseBackend, rephrase_samples
    from mm_assets.storage import Storage

    records_path, cache_root, marker, block_after, batch_size = sys.argv[1:6]

    class BlocksAfter(TemplateParaphraseBackend):
        calls = 0
        def rephrase(self, texts):
            if self.calls == int(block_after):
                pathlib.Path(marker).write_text(str(self.calls))
                time.sleep(3600)
            self.calls += 1
            return super().rephrase(texts)

    records = [tuple(r) for r in json.loads(pathlib.Path(records_path).read_text())]
    rephrase_samples(records, BlocksAfter(), Storage(cache_root), batch_size=int(batch_size))
    """)


def run_and_kill(records, cache_root, tmp_path, block_after: int, batch_size: int) -> None:
    """Run rephrasing in a child process, SIGKILL it while batch `block_after` is in flight."""
    (tmp_path / "records.json").write_text(json.dumps(records))
    kill_when_blocked(tmp_path, CHILD, str(tmp_path / "records.json"), str(cache_root), str(block_after),
                      str(batch_size), timeout=60)


def test_killed_run_restarts_with_only_what_was_left(tmp_path):
    n, batch_size, block_after = 50, 8, 3
    records = numbered_records(n)
    killed_root = tmp_path / "killed"
    run_and_kill(records, killed_root, tmp_path, block_after, batch_size)
    store = Storage(str(killed_root))
    cache = RephraseCache(store, TemplateParaphraseBackend.model_id, TemplateParaphraseBackend.prompt_version)
    cached = len(cache)
    assert cached == block_after * batch_size          # the batch in flight is lost, nothing else

    resumed, stats = rephrase_samples(records, TemplateParaphraseBackend(), store, batch_size=batch_size)
    assert stats["from_cache"] == cached and stats["generated"] == n - cached
    assert int(resumed["cached"].sum()) == cached

    fresh, fresh_stats = rephrase_samples(records, TemplateParaphraseBackend(), Storage(str(tmp_path / "fresh")),
                                          batch_size=batch_size)
    assert fresh_stats["generated"] == n
    assert resumed.drop("cached").equals(fresh.drop("cached"))


# ----------------------------------------------------------------------------- language-model back ends


@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory):
    """A random-init Llama causal LM and the project's BPE tokenizer (chat template included)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mm_assets.vlm.tokenizer import train_bpe_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_lm")
    texts = [q for _, r in generated_records(range(2)) for q in (t["value"] for t in r["conversations"])]
    tok = train_bpe_tokenizer(texts, vocab_size=600)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_hf_backend_runs_end_to_end_and_its_garbage_is_rejected(tiny_causal_lm, tmp_path):
    import torch

    torch.set_num_threads(1)
    records = generated_records(range(1))[:8]
    backend = load_rephraser("hf", "paraphrase", str(tiny_causal_lm), batch_size=4, max_new_tokens=12)
    assert isinstance(backend, HFRephraseBackend) and backend.model_id == model_fingerprint(tiny_causal_lm)
    store = Storage(str(tmp_path / "cache"))
    results, stats = rephrase_samples(records, backend, store, batch_size=5)
    assert stats["generated"] == stats["unique_texts"] > 0
    sent = results.filter(pl.col("generated").is_not_null())
    assert sent.height == stats["turns"] - sum(stats["skipped"].values())
    # a random network writes noise: validation rejects it, counted by reason, originals kept
    assert sum(stats["rejected"].values()) == sent.height - stats["rewritten"]
    assert sum(stats["rejected"].values()) >= sent.height - 1
    assert results.filter(~pl.col("ok"))["rewritten"].null_count() == results.filter(~pl.col("ok")).height
    # greedy: the same outputs again, and a second run is served from the cache
    bodies = [split_placeholders(t)[1] for t in sent["original"].head(4).to_list()]
    assert backend.rephrase(bodies) == sent["generated"].head(4).to_list()
    one_by_one = HFRephraseBackend(str(tiny_causal_lm), batch_size=1, max_new_tokens=12)
    assert one_by_one.rephrase(bodies) == sent["generated"].head(4).to_list()     # left padding changes nothing
    _, stats2 = rephrase_samples(records, backend, store, batch_size=5)
    assert stats2["generated"] == 0 and stats2["from_cache"] == stats["unique_texts"]
    backend.close()


def test_vllm_backend_reports_a_missing_install(monkeypatch, tiny_causal_lm):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(RuntimeError, match="gpu extra"):
        VLLMRephraseBackend(str(tiny_causal_lm))


def test_vllm_backend_generates(tiny_causal_lm):
    pytest.importorskip("vllm")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU")
    backend = VLLMRephraseBackend(str(tiny_causal_lm), max_new_tokens=8, enforce_eager=True,
                                  gpu_memory_utilization=0.3)
    try:
        out = backend.rephrase(["What colour is the cross?", "How many shapes are there?"])
        assert len(out) == 2 and all(isinstance(o, str) for o in out)
    finally:
        backend.close()
