"""Training core (issue #6): labels, packing equivalence, schedules, accumulation, resume, checkpoints.

One tiny LLaVA (SigLIP tower + 2-layer Llama) and one BPE tokenizer are built per module; a few
fake curated WebDataset shards (random PIL images, LLaVA-format conversations) are written with
``write_shard``.
"""

from __future__ import annotations

import io
import json
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mm_assets.training.data import IGNORE_INDEX, encode_conversation, load_dataset  # noqa: E402
from mm_assets.training.packing import (block_causal_mask, collate_packed, collate_padded,  # noqa: E402
                                        first_fit)
from mm_assets.training.schedule import lr_at  # noqa: E402
from mm_assets.training.trainer import (TrainConfig, accumulate_gradients, latest_resumable,  # noqa: E402
                                        load_model_and_processor, train)
from shard_files import write_shards  # noqa: E402

WORDS = ("red blue green square circle dots chart value total number text picture many how what "
         "is the a of in colour shown there are three two one four five six bar line").split()


def _image_bytes(rng: random.Random, fmt: str) -> bytes:
    from PIL import Image

    w, h = rng.randint(24, 96), rng.randint(24, 96)
    arr = np.random.default_rng(rng.randint(0, 2**31)).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _phrase(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def fake_samples(n: int, seed: int = 0, prefix: str = "s") -> list[tuple[str, dict[str, bytes]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        with_image = i % 3 != 2                      # two image rows for each text-only row
        turns = 1 + (i % 4 == 1)                     # some multi-turn chats
        conv = []
        for t in range(turns):
            q = _phrase(rng, 3, 10) + "?"
            if with_image and t == 0:
                q = "<image>\n" + q
            conv += [{"from": "human", "value": q}, {"from": "gpt", "value": _phrase(rng, 1, 6)}]
        key = f"{prefix}{i:04d}"
        rec = {"sample_id": key, "domain": "general", "conversations": conv,
               "image": {"ext": "png"} if with_image else None}
        fields = {"json": json.dumps(rec).encode()}
        if with_image:
            fmt = "PNG" if i % 2 else "JPEG"
            fields["png" if fmt == "PNG" else "jpg"] = _image_bytes(rng, fmt)
        out.append((key, fields))
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from mm_assets.vlm.tiny_llava import build_tiny_llava
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("training")
    samples = fake_samples(24, seed=0)
    texts = [t["value"] for _, f in samples for t in json.loads(f["json"])["conversations"]]
    tok = train_bpe_tokenizer(texts + [" ".join(WORDS)] * 4, vocab_size=512)
    base = build_tiny_llava(root / "base", tok, seed=0)
    shards = write_shards(root / "curated", samples, per_shard=10)
    model, processor = load_model_and_processor(base)
    model.eval()
    encoded, skipped = load_dataset(shards, processor, max_len=256)
    return {"root": root, "base": base, "shards": shards, "model": model, "processor": processor,
            "samples": encoded, "skipped": skipped}


# ----------------------------------------------------------------------------- labels / BOS


def test_dataset_reads_every_sample(env):
    assert len(env["samples"]) == 24 and not env["skipped"]
    assert sum(s.pixel_values is None for s in env["samples"]) == 8
    assert all(s.pixel_values.shape == (1, 3, 64, 64) for s in env["samples"] if s.pixel_values is not None)


def test_images_are_held_as_8_bit_levels_and_give_back_the_processors_values(env):
    """The encoded dataset lives in memory: images as uint8 levels (a quarter of float32), the
    processor's normalised values recomputed on use, equal to float rounding."""
    from PIL import Image

    from mm_assets.training.data import StoredPixels, store_pixels

    image_rows = [s for s in env["samples"] if s.pixels is not None]
    assert image_rows and all(isinstance(s.pixels, StoredPixels) and s.pixels.levels.dtype == torch.uint8
                              for s in image_rows)
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8))
    ip = env["processor"].image_processor
    exact = torch.from_numpy(np.stack([np.asarray(p) for p in ip(images=[rgb])["pixel_values"]])).float()
    assert (store_pixels(exact, ip).floats() - exact).abs().max() < 1e-6
    assert isinstance(store_pixels(exact * 0.3, ip), torch.Tensor)      # not 8-bit levels: kept as floats


def test_labels_only_assistant_tokens_image_masked_bos_once(env):
    from PIL import Image

    proc = env["processor"]
    tok = proc.tokenizer
    conv = [{"from": "human", "value": "<image>\nhow many dots are there?"},
            {"from": "gpt", "value": "three red dots"},
            {"from": "human", "value": "what colour is the square?"},
            {"from": "gpt", "value": "blue"}]
    s = encode_conversation(proc, conv, [Image.new("RGB", (40, 30), (255, 0, 0))], sample_id="x")
    ids, labels = s.input_ids.tolist(), s.labels.tolist()
    image_id = tok.convert_tokens_to_ids("<image>")
    # BOS exactly once, first
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    # image tokens: expanded to the tower's feature count, all masked
    n_img = sum(t == image_id for t in ids)
    assert n_img == env["model"].config.image_seq_length == 16
    assert all(lab == IGNORE_INDEX for t, lab in zip(ids, labels) if t == image_id)
    # targets = exactly the answer tokens + EOS of each assistant turn, in order
    targets = [lab for lab in labels if lab != IGNORE_INDEX]
    want = (tok(" three red dots", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            + tok(" blue", add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    assert targets == want
    assert tok.decode(targets) == " three red dots</s> blue</s>"
    # labels equal the input id where set (no shift in the data; the loss shifts)
    assert all(lab == t for t, lab in zip(ids, labels) if lab != IGNORE_INDEX)
    # prompt / template tokens masked: everything before the first answer is context
    first = labels.index(want[0])
    assert tok.decode(ids[:first]).endswith("ASSISTANT:")
    assert tok.decode(ids[first:first + 3]).startswith(" three")
    # text-only rows: no pixel values, same BOS rule
    t = encode_conversation(proc, conv[2:], [], sample_id="y")
    assert t.pixel_values is None and t.input_ids.tolist().count(tok.bos_token_id) == 1
    assert tok.decode([x for x in t.labels.tolist() if x != IGNORE_INDEX]) == " blue</s>"
    # the BOS bug: the chat rendered and tokenised any usual way has exactly one BOS
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    rendered = tok.apply_chat_template(msgs, tokenize=False)
    for encoded in (tok(rendered)["input_ids"], tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]):
        assert list(encoded).count(tok.bos_token_id) == 1 and encoded[0] == tok.bos_token_id
    # every dataset sample: one BOS at 0, image tokens masked, BOS/labels consistent
    for smp in env["samples"]:
        ii, ll = smp.input_ids, smp.labels
        assert int((ii == tok.bos_token_id).sum()) == 1 and int(ii[0]) == tok.bos_token_id
        assert bool((ll[ii == image_id] == IGNORE_INDEX).all())
        assert smp.n_targets > 0 and int(ll[0]) == IGNORE_INDEX


def test_image_count_mismatch_is_skipped(env):
    from mm_assets.training.data import SkipSample

    with pytest.raises(SkipSample, match="image_token_mismatch"):
        encode_conversation(env["processor"], [{"from": "human", "value": "<image>\nq"},
                                               {"from": "gpt", "value": "a"}], [])


def test_a_second_recipe_reuses_the_encodings_of_its_shared_samples(env, tmp_path):
    """A recipe whose shards hold the same samples under other keys (another curated version),
    one rewritten conversation and one sample that cannot be trained on: served from the memo
    with its own keys and metadata, equal to a fresh encoding, the rewrite and the skip encoded
    (and counted) as without the memo; a full memo drops its oldest entries."""
    from mm_assets.training.encoding_memo import EncodingMemo, processor_fingerprint

    first = fake_samples(8, seed=3, prefix="a")
    second = [(k.replace("a", "b_r1"), dict(f)) for k, f in first]
    rec = json.loads(second[4][1]["json"])
    rec["conversations"][-1]["value"] = "a rewritten answer"
    second[4][1]["json"] = json.dumps(rec).encode()
    bad = {"sample_id": "bad", "domain": "general", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                                      {"from": "gpt", "value": "a"}]}
    second.append(("bad", {"json": json.dumps(bad).encode()}))
    key = processor_fingerprint(env["base"])
    assert key == processor_fingerprint(env["base"]) and len(key) == 20
    memo = EncodingMemo(max_bytes=2**30)
    processor = env["processor"]
    load_dataset(write_shards(tmp_path / "a", first, per_shard=5), processor, 256, memo=memo, processor_key=key)
    assert (memo.hits, memo.misses) == (0, 8)
    shards_b = write_shards(tmp_path / "b", second, per_shard=5)
    served, skipped = load_dataset(shards_b, processor, 256, memo=memo, processor_key=key)
    assert (memo.hits, memo.misses) == (7, 10)
    fresh, fresh_skipped = load_dataset(shards_b, processor, 256)
    assert skipped == fresh_skipped == {"image_token_mismatch": 1}
    assert [s.sample_id for s in served] == [s.sample_id for s in fresh] == [k for k, _ in second[:8]]
    for s, f in zip(served, fresh):
        assert s.meta == f.meta
        assert torch.equal(s.input_ids, f.input_ids) and torch.equal(s.labels, f.labels)
        assert (s.pixel_values is None) == (f.pixel_values is None)
        if f.pixel_values is not None:
            assert torch.equal(s.pixel_values, f.pixel_values)
    load_dataset(shards_b, processor, 256, memo=memo, processor_key=key)
    assert (memo.hits, memo.misses) == (16, 10)            # the skip is remembered too
    small = EncodingMemo(max_bytes=30_000)                # about two image samples here
    load_dataset(write_shards(tmp_path / "c", first, per_shard=5), processor, 256, memo=small, processor_key=key)
    assert 0 < len(small._items) < 8


# ----------------------------------------------------------------------------- packing


def test_first_fit_deterministic():
    assert first_fit([5, 3, 4, 2, 6, 1], 8) == [[0, 1], [2, 3, 5], [4]]
    assert first_fit([5, 4, 3, 2], 8) == [[0, 2], [1, 3]]
    assert first_fit([5, 4, 3, 4], 8, window=1) == [[0], [1, 2], [3]]
    assert first_fit([5, 3, 4, 2, 6, 1], 8) == first_fit([5, 3, 4, 2, 6, 1], 8)
    with pytest.raises(ValueError):
        first_fit([9], 8)


def test_block_causal_mask_shape_and_values():
    seg = torch.tensor([[0, 0, 1, 1, 1, -1]])
    m = block_causal_mask(seg)
    allowed = (m[0, 0] == 0)
    assert m.shape == (1, 1, 6, 6)
    assert allowed[1].tolist() == [True, True, False, False, False, False]
    assert allowed[4].tolist() == [False, False, True, True, True, False]
    assert allowed[5].tolist() == [False] * 5 + [True]


def _alone_logits(model, s):
    kw = {"input_ids": s.input_ids[None], "use_cache": False}
    if s.pixel_values is not None:
        kw["pixel_values"] = s.pixel_values
    return model(**kw).logits[0]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_each_sample_alone(env, attn):
    """Acceptance: packed-batch logits == each sample run alone (1e-4), image + text rows mixed."""
    model = env["model"]
    model.set_attn_implementation(attn)
    try:
        samples = env["samples"][:9]                  # 6 image rows, 3 text-only rows
        assert {s.pixel_values is None for s in samples} == {True, False}
        lengths = [s.length for s in samples]
        max_len = sum(sorted(lengths)[-4:])
        rows = [[samples[i] for i in row] for row in first_fit(lengths, max_len)]
        assert len(rows) >= 2 and max(len(r) for r in rows) >= 3
        n_img = [sum(s.pixel_values is not None for s in r) for r in rows]
        assert max(n_img) >= 2 and any(0 < k < len(r) for k, r in zip(n_img, rows))   # images in order, mixed rows
        batch = collate_packed(rows, env["processor"].tokenizer.pad_token_id, max_len)
        assert batch.pixel_values.shape[0] == sum(s.pixel_values is not None for s in samples)
        with torch.no_grad():
            packed = model(**batch.model_inputs()).logits
            checked = 0
            for r, row_spans in enumerate(batch.spans):
                for (a, b, sid), s in zip(row_spans, rows[r]):
                    assert sid == s.sample_id
                    assert batch.position_ids[r, a:b].tolist() == list(range(b - a))
                    alone = _alone_logits(model, s)
                    torch.testing.assert_close(packed[r, a:b], alone, atol=1e-4, rtol=0)
                    checked += 1
            assert checked == len(samples)
            # control: the same packed rows with a plain causal mask (attention across samples) differ
            full_causal = block_causal_mask(torch.zeros_like(batch.segment_ids))
            leaky = model(input_ids=batch.input_ids, pixel_values=batch.pixel_values, attention_mask=full_causal,
                          position_ids=batch.position_ids, use_cache=False).logits
            a, b, _ = batch.spans[0][1]
            assert (leaky[0, a:b] - packed[0, a:b]).abs().max() > 1e-3
    finally:
        model.set_attn_implementation("sdpa")


def test_position_ids_only_packing_needs_use_cache_off(env):
    """transformers 5.24 derives the same block mask from reset position_ids when no mask and no
    cache are given; with the default cache (use_cache from config) it silently does not."""
    model = env["model"]
    batch = collate_packed([env["samples"][:3], env["samples"][3:5]], env["processor"].tokenizer.pad_token_id)
    real = batch.segment_ids >= 0
    with torch.no_grad():
        explicit = model(**batch.model_inputs()).logits
        kw = dict(input_ids=batch.input_ids, pixel_values=batch.pixel_values, position_ids=batch.position_ids)
        derived = model(**kw, use_cache=False).logits
        cached = model(**kw).logits
    torch.testing.assert_close(derived[real], explicit[real], atol=1e-5, rtol=0)
    assert (cached[real] - explicit[real]).abs().max() > 1e-3


def test_padding_collator_logits_equal_alone(env):
    model = env["model"]
    samples = env["samples"][9:13]
    batch = collate_padded(samples, env["processor"].tokenizer.pad_token_id)
    assert batch.attention_mask.shape == batch.input_ids.shape
    with torch.no_grad():
        logits = model(**batch.model_inputs()).logits
        for r, s in enumerate(samples):
            torch.testing.assert_close(logits[r, :s.length], _alone_logits(model, s), atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- schedules


def test_segment_attention_and_labelled_logits_give_the_masked_paths_loss_and_gradients(env):
    """The trainer's step (each packed sample attends alone, LM head only at labelled positions)
    equals the dense path (4D block mask over the row, logits everywhere) in loss and gradients,
    on rows mixing image and text samples with padding; a row whose spans do not tile it raises."""
    from mm_assets.training.segment_attention import packed_segments, segment_attention
    from mm_assets.training.trainer import target_loss_sum, token_loss_sum

    samples = env["samples"][:10]
    lengths = [s.length for s in samples]
    max_len = sum(sorted(lengths)[-3:])
    rows = [[samples[i] for i in row] for row in first_fit(lengths, max_len)]
    batch = collate_packed(rows, env["processor"].tokenizer.pad_token_id, max_len)
    assert len(rows) >= 2 and (batch.segment_ids < 0).any() and max(len(r) for r in rows) >= 2
    results = {}
    for impl in ("sdpa", "segments"):
        model, _ = load_model_and_processor(env["base"], impl)
        model.train()
        model.zero_grad(set_to_none=True)
        loss = (token_loss_sum(model(**batch.model_inputs()).logits, batch.labels) if impl == "sdpa"
                else target_loss_sum(model, batch))
        loss.backward()
        results[impl] = (float(loss), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    (l_dense, g_dense), (l_seg, g_seg) = results["sdpa"], results["segments"]
    assert l_seg == pytest.approx(l_dense, rel=1e-5)
    assert g_seg.keys() == g_dense.keys() and len(g_seg) > 10
    for k in g_seg:
        torch.testing.assert_close(g_seg[k], g_dense[k], atol=1e-5, rtol=1e-3)
    q = torch.zeros(1, 2, 6, 4)
    with pytest.raises(ValueError, match="tile the row"):
        segment_attention(model.model.language_model.layers[0].self_attn, q, q, q, None,
                          packed_segments=[[(0, 2), (3, 6)]])
    assert packed_segments(batch.spans)[0][0][0] == 0


def test_schedules_warmup_then_shape():
    base, total, warm = 1.0, 10, 2
    for kind in ("cosine", "linear", "constant"):
        assert lr_at(0, total, base, kind, warm) == pytest.approx(0.5)
        assert lr_at(1, total, base, kind, warm) == pytest.approx(1.0)
        assert lr_at(2, total, base, kind, warm) == pytest.approx(1.0)
    assert lr_at(6, total, base, "cosine", warm) == pytest.approx(0.5)          # progress 4/8
    assert lr_at(4, total, base, "cosine", warm) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.25)))
    assert lr_at(6, total, base, "linear", warm) == pytest.approx(0.5)
    assert lr_at(9, total, base, "linear", warm) == pytest.approx(1 / 8)
    assert lr_at(9, total, base, "constant", warm) == 1.0
    assert lr_at(9, total, base, "cosine", warm, min_lr=0.1) > 0.1
    cos = [lr_at(s, total, base, "cosine", warm) for s in range(total)]
    assert cos[:3] == sorted(cos[:3]) and cos[2:] == sorted(cos[2:], reverse=True)
    assert lr_at(0, 5, 2.0, "linear", 0) == 2.0
    with pytest.raises(ValueError):
        lr_at(0, 5, 1.0, "exp", 0)


# ----------------------------------------------------------------------------- optimisation


def test_grad_accumulation_equals_big_batch(env):
    from PIL import Image

    model, _ = load_model_and_processor(env["base"])
    model.train()
    proc = env["processor"]
    img = Image.new("RGB", (32, 32), (10, 200, 30))
    a = encode_conversation(proc, [{"from": "human", "value": "<image>\nwhat is the colour?"},
                                   {"from": "gpt", "value": "green square"}], [img], "a")
    b = encode_conversation(proc, [{"from": "human", "value": "<image>\nwhat is the value?"},
                                   {"from": "gpt", "value": "blue circle"}], [img.rotate(90)], "b")
    assert a.length == b.length
    pad = proc.tokenizer.pad_token_id

    def grads(micro):
        model.zero_grad(set_to_none=True)
        loss, n = accumulate_gradients(model, micro)
        return loss, n, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    l2, n2, g2 = grads([collate_padded([a, b], pad)])
    l1, n1, g1 = grads([collate_padded([a], pad), collate_padded([b], pad)])
    assert n1 == n2 and l1 == pytest.approx(l2, rel=1e-6)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], atol=1e-6, rtol=1e-4)


def _cfg(**kw) -> TrainConfig:
    base = dict(training_run="run-test", recipe="baseline", curated_versions={"general": "v123"},
                batch_size=1, grad_accum=2, max_len=160, lr=3e-3, schedule="cosine", warmup=2, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases(env, tmp_path):
    # a tiny dataset repeated: 4 samples x 8 = 32 rows; 30 steps of batch 1 row
    samples = fake_samples(4, seed=3, prefix="r")
    reps = [(f"{k}x{j}", f) for j in range(8) for k, f in samples]
    shards = write_shards(tmp_path / "rep", reps, per_shard=16)
    logs = []
    res = train(_cfg(epochs=1, max_steps=30, batch_size=1, grad_accum=1, packing=False, lr=5e-3,
                     schedule="constant", warmup=3, save_each_epoch=False),
                env["base"], shards, lambda epoch, step: tmp_path / "ck" / f"step-{step:06d}", logs.append)
    assert res.total_steps == 30 and len(logs) == 30
    losses = [d["loss"] for d in logs]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
    assert all(d["tokens_per_s"] > 0 and d["tokens"] > 0 for d in logs)
    assert {"loss", "lr", "tokens_per_s", "step", "epoch", "grad_norm"} <= logs[0].keys()


@pytest.fixture(scope="module")
def straight_run(env):
    root = env["root"] / "straight"
    logs = []
    res = train(_cfg(epochs=2, max_steps=6, save_every_steps=3), env["base"], env["shards"],
                lambda epoch, step: root / f"ckpt-{step:06d}", logs.append)
    return root, res, logs


def test_resume_matches_uninterrupted(env, straight_run):
    root_a, res_a, logs_a = straight_run
    assert res_a.total_steps == 6 and [d["step"] for d in logs_a] == [1, 2, 3, 4, 5, 6]
    assert [d["epoch"] for d in logs_a] == [1, 1, 1, 2, 2, 2]      # the resume point is an epoch boundary
    root_b = env["root"] / "resumed"
    out = lambda epoch, step: root_b / f"ckpt-{step:06d}"  # noqa: E731
    logs_b = []
    r1 = train(_cfg(epochs=2, max_steps=6, save_every_steps=3, stop_after_steps=3), env["base"], env["shards"],
               out, logs_b.append)
    assert r1.stopped_early and r1.final_step == 3
    last = latest_resumable(root_b)
    assert last is not None and last.endswith("ckpt-000003")
    r2 = train(_cfg(epochs=2, max_steps=6, save_every_steps=3), env["base"], env["shards"], out, logs_b.append,
               resume_from=last)
    assert r2.final_step == 6 and [d["step"] for d in logs_b] == [1, 2, 3, 4, 5, 6]
    assert [d["loss"] for d in logs_b] == pytest.approx([d["loss"] for d in logs_a], rel=1e-6, abs=1e-7)
    assert [d["lr"] for d in logs_b] == [d["lr"] for d in logs_a]
    assert [h["loss"] for h in r2.history] == pytest.approx([h["loss"] for h in res_a.history], rel=1e-6)
    from safetensors.torch import load_file

    wa = load_file(root_a / "ckpt-000006" / "model.safetensors")
    wb = load_file(root_b / "ckpt-000006" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0)
    # the resumed checkpoint's parent is the checkpoint it resumed from
    man = json.loads((root_b / "ckpt-000006" / "manifest.json").read_text())
    assert man["parent"].endswith("ckpt-000003")
    # a sealed checkpoint is never overwritten
    with pytest.raises(FileExistsError):
        train(_cfg(epochs=2, max_steps=6, save_every_steps=3, stop_after_steps=3), env["base"], env["shards"],
              out, None)


def test_checkpoints_through_storage_uri_and_resume_from_uri(env, straight_run):
    """out_dir_fn may return a URI: sealed locally, uploaded through Storage with the marker last;
    a run resumes from a URI checkpoint (downloaded, verified) *mid-epoch* (step 2 of 3) and
    matches the uninterrupted local run."""
    from mm_assets.checkpoints import list_complete, verify_checkpoint
    from mm_assets.storage import Storage

    uri = f"memory://mm-train-{os.getpid()}"
    out = lambda epoch, step: f"{uri}/ckpt-{step:06d}"  # noqa: E731
    logs = []
    train(_cfg(epochs=2, max_steps=6, save_every_steps=3, stop_after_steps=2), env["base"], env["shards"], out,
          logs.append)
    st = Storage(uri)
    assert list_complete(st) == ["ckpt-000002"]
    assert verify_checkpoint(st, "ckpt-000002")["epoch_complete"] is False
    last = latest_resumable(uri)
    assert last is not None and last.endswith("mm-train-%d/ckpt-000002" % os.getpid())
    train(_cfg(epochs=2, max_steps=6, save_every_steps=3), env["base"], env["shards"], out, logs.append,
          resume_from=last)
    assert list_complete(st) == ["ckpt-000002", "ckpt-000003", "ckpt-000006"]
    assert verify_checkpoint(st, "ckpt-000006")["parent"].endswith("ckpt-000003")
    assert [d["step"] for d in logs] == [1, 2, 3, 4, 5, 6]
    _, _, logs_a = straight_run
    assert [d["loss"] for d in logs] == pytest.approx([d["loss"] for d in logs_a], rel=1e-6, abs=1e-7)


def test_checkpoint_files_do_not_depend_on_where_the_run_is_stored(env, straight_run, tmp_path):
    """The same run from a copy of the base model at another place, recorded under another base
    model location, with its checkpoints under a URI: every file a checkpoint's version hashes,
    trainer_state.json included, has the same bytes as in the local run — only the manifest's
    lineage names the places."""
    import shutil

    from mm_assets.checkpoints import checkpoint_version

    _, res_a, _ = straight_run
    base_copy = shutil.copytree(env["base"], tmp_path / "elsewhere" / "base")
    uri = f"memory://mm-where-{os.getpid()}"
    res_b = train(_cfg(epochs=2, max_steps=6, save_every_steps=3, base_model_uri="s3://models/base"), base_copy,
                  env["shards"], lambda epoch, step: f"{uri}/ckpt-{step:06d}")
    assert [c["step"] for c in res_b.checkpoints] == [c["step"] for c in res_a.checkpoints] == [3, 6]
    for a, b in zip(res_a.checkpoints, res_b.checkpoints):
        assert b["manifest"]["files"] == a["manifest"]["files"]
        assert checkpoint_version(b["manifest"]) == checkpoint_version(a["manifest"])
    assert res_b.checkpoints[0]["manifest"]["base_model"] == "s3://models/base"
    assert res_b.checkpoints[1]["manifest"]["parent"] == f"{uri}/ckpt-000003"


def test_checkpoint_verifies_reloads_and_vision_frozen(env, straight_run):
    from safetensors.torch import load_file
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from mm_assets.checkpoints import verify_checkpoint
    from mm_assets.storage import Storage

    root, res, _ = straight_run
    names = sorted(p.name for p in root.iterdir())
    assert {"ckpt-000003", "ckpt-000006"} <= set(names)
    st = Storage(str(root))
    for name in names:
        man = verify_checkpoint(st, name)
        for key in ("training_run", "recipe", "curated_versions", "step", "epoch", "parent", "model", "files"):
            assert key in man
        assert man["training_run"] == "run-test" and man["recipe"] == "baseline"
        assert man["curated_versions"] == {"general": "v123"}
        assert {"model.safetensors", "config.json", "optimizer.pt", "trainer_state.json",
                "tokenizer.json", "processor_config.json"} <= set(man["files"])
    man6 = verify_checkpoint(st, "ckpt-000006")
    assert man6["step"] == 6 and man6["parent"].endswith("ckpt-000003")
    m = LlavaForConditionalGeneration.from_pretrained(root / "ckpt-000006", local_files_only=True)
    AutoProcessor.from_pretrained(root / "ckpt-000006", local_files_only=True)
    before = load_file(env["base"] / "model.safetensors")
    after = load_file(root / "ckpt-000006" / "model.safetensors")
    assert before.keys() == after.keys()
    base_model = LlavaForConditionalGeneration.from_pretrained(env["base"], local_files_only=True)
    for (k, v), (k0, v0) in zip(m.model.vision_tower.state_dict().items(),
                                base_model.model.vision_tower.state_dict().items()):
        assert k == k0 and torch.equal(v, v0), k
    vision = [k for k in before if "vision_tower" in k]
    assert vision
    for k in vision:
        assert torch.equal(before[k], after[k]), k
    changed = [k for k in before if "multi_modal_projector" in k or "language_model" in k
               if not torch.equal(before[k], after[k])]
    assert any("multi_modal_projector" in k for k in changed) and any("language_model" in k for k in changed)


# ----------------------------------------------------------------------------- token budget

def _plan_tokens(plan, lengths):
    from mm_assets.training.trainer import step_tokens
    return sum(step_tokens(step, lengths) for steps in plan for step in steps)


@pytest.mark.parametrize("n_samples", [7, 40, 300])
def test_a_budgeted_plan_ends_within_half_a_row_of_the_budget(n_samples):
    """Whatever the curated size, the plan's tokens land within half a packed row of the budget:
    a smaller dataset is repeated over more epochs, each its own permutation."""
    from mm_assets.training.trainer import make_plan

    rng = random.Random(n_samples)
    lengths = [rng.randint(20, 150) for _ in range(n_samples)]
    cfg = _cfg(budget_tokens=20_000, batch_size=2, grad_accum=2, max_len=160)
    plan = make_plan(lengths, cfg)
    assert abs(_plan_tokens(plan, lengths) - cfg.budget_tokens) <= cfg.max_len / 2
    assert len(plan) >= cfg.budget_tokens // sum(lengths)          # epochs follow one another
    firsts = [steps[0][0][0] for steps in plan[:3] if steps]
    assert len(firsts) < 2 or firsts[0] != firsts[1] or plan[0] != plan[1]


def test_half_the_data_is_seen_twice_as_often_at_equal_budget():
    from mm_assets.training.trainer import make_plan

    lengths = [100] * 200
    full = make_plan(lengths, _cfg(budget_tokens=60_000, max_len=400, batch_size=2, grad_accum=1))
    half = make_plan(lengths[:100], _cfg(budget_tokens=60_000, max_len=400, batch_size=2, grad_accum=1))
    assert _plan_tokens(full, lengths) == _plan_tokens(half, lengths[:100]) == 60_000
    assert (len(full), len(half)) == (3, 6)


def test_checkpoints_at_fixed_fractions_of_the_budget():
    from mm_assets.training.trainer import budget_checkpoints, make_plan

    lengths = [90] * 50
    cfg = _cfg(budget_tokens=30_000, checkpoint_fractions=(0.25, 0.5, 0.75, 1.0), max_len=180, batch_size=2,
               grad_accum=1)
    plan = make_plan(lengths, cfg)
    cumulative, marks = budget_checkpoints(plan, lengths, cfg)
    assert sorted(marks.values()) == [0.25, 0.5, 0.75, 1.0]
    for step, fraction in marks.items():
        assert cumulative[step - 1] >= fraction * cfg.budget_tokens - cfg.max_len / 2
        assert step == 1 or cumulative[step - 2] < fraction * cfg.budget_tokens
    assert marks[len(cumulative)] == 1.0


def test_budgeted_training_writes_its_checkpoints_with_tokens_in_the_manifest(env, tmp_path):
    cfg = _cfg(budget_tokens=3_000, checkpoint_fractions=(0.5, 1.0), save_each_epoch=False)
    res = train(cfg, env["base"], env["shards"], lambda epoch, step: tmp_path / f"e{epoch}-s{step}")
    manifests = [c["manifest"] for c in res.checkpoints]
    assert [round(m["budget_fraction"], 1) for m in manifests] == [0.5, 1.0]
    assert abs(manifests[-1]["tokens_seen"] - 3_000) <= cfg.max_len / 2
    assert sum(h["tokens"] for h in res.history) == manifests[-1]["tokens_seen"]
