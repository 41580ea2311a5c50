"""The embeddings stage as plain functions: tiny SigLIP2, training, inference, storage."""

import io
import json
import os

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from mm_assets.embeddings import (build_tiny_siglip2, embed_images, embed_shards, embed_texts, iter_shard_images,
                                  iter_shard_texts, load_embedder, read_embeddings, save_embedder,
                                  train_tiny_siglip2, training_pairs, write_embeddings)
from mm_assets.embeddings.inference import decode_image
from mm_assets.embeddings.model import TinySiglip2Spec
from mm_assets.embeddings.preprocess import FastSiglip2Preprocess, is_plain_siglip2_processor
from mm_assets.embeddings.store import EmbeddingsMismatch
from mm_assets.embeddings.train import TrainConfig, augment_text, perturb_text, sigmoid_loss
from mm_assets.storage import Storage

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A shrunken look-alike data set (40 records per domain), ingested into shards."""
    from mm_assets.sample_data import generate_sample_data
    from mm_assets.sources.ingest import ingest_domain
    from mm_assets.sources.samples_table import build_samples_table
    from mm_assets.sources.source_scan import SourceSpec, scan_sources
    from mm_assets.taxonomy import DOMAINS

    root = tmp_path_factory.mktemp("emb_data")
    generate_sample_data(root, scale="demo", seed=0, _records_per_domain=40, _eval_items=10)
    out = Storage(str(tmp_path_factory.mktemp("emb_ingest")))
    manifest = scan_sources([SourceSpec("main", str(root / "main" / "mammoth_si.json"), str(root / "main" / "images"))],
                            str(root / "source_to_domain.json"), out.child("source"))
    shards, tables = {}, []
    for d in DOMAINS:
        m = ingest_domain(out.child("source"), manifest, d, out.child(f"raw/{d}"), samples_per_shard=25)
        shards[d] = [out.child(f"raw/{d}").uri(s["tar"]) for s in m["shards"]]
        tables.append(build_samples_table(out.child(f"raw/{d}"), m))
    truth = json.loads((root / "truth" / "planted_truth.json").read_text())
    return {"shards": shards, "samples": pl.concat(tables), "truth": truth}


@pytest.fixture(scope="module")
def texts(small):
    df = small["samples"]
    return [f"{q}\n{a}" for q, a in zip(df["question"], df["answer"])]


@pytest.fixture(scope="module")
def tiny(texts):
    return build_tiny_siglip2(seed=0, texts=texts)


@pytest.fixture(scope="module")
def image_shards(small):
    return [s for d, ss in small["shards"].items() if d != "language" for s in ss]


@pytest.fixture(scope="module")
def trained(small, tmp_path_factory):
    """Briefly trained on the small pool (all domains)."""
    pairs = training_pairs([s for ss in small["shards"].values() for s in ss])
    out = tmp_path_factory.mktemp("tiny_trained")
    # one torch thread: robust on a shared 2-core machine (OpenMP threads fighting another
    # process for a core slow every parallel region down)
    cfg = TrainConfig(text_batch_size=16, warmup=5, num_threads=1)
    return train_tiny_siglip2(pairs, out, steps=30, batch_size=24, seed=0, config=cfg)


def test_tiny_siglip2_builds_deterministically(texts):
    state = torch.random.get_rng_state()
    m1, t1, p1 = build_tiny_siglip2(seed=0, texts=texts)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG must be left untouched"
    m2, t2, _ = build_tiny_siglip2(seed=0, texts=texts)
    m3, _, _ = build_tiny_siglip2(seed=1, texts=texts)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1 if s1[k].is_floating_point())
    assert t1.backend_tokenizer.to_str() == t2.backend_tokenizer.to_str()
    assert type(m1).__name__ == "Siglip2Model" and is_plain_siglip2_processor(p1)
    assert m1.config.vision_config.hidden_size == m1.config.text_config.projection_size
    assert sum(p.numel() for p in m1.parameters()) < 3_000_000


def test_save_load_round_trip_gives_identical_embeddings(tiny, image_shards, texts, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok, proc = tiny
    path = save_embedder(model, tok, proc, tmp_path / "tiny")
    files = set(os.listdir(path))
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    m2, tok2, proc2 = load_embedder(path)
    assert type(m2).__name__ == "Siglip2Model" and not m2.training
    sample = texts[:20]
    assert tok(sample)["input_ids"] == tok2(sample)["input_ids"]
    ids1, v1 = embed_images(model, proc, image_shards[:2], 16)
    ids2, v2 = embed_images(m2, proc2, image_shards[:2], 16)
    assert ids1 == ids2 and np.array_equal(v1, v2)
    assert np.array_equal(embed_texts(model, tok, sample), embed_texts(m2, tok2, sample))


def test_load_embedder_never_goes_to_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError):
        load_embedder("google/siglip2-this-model-does-not-exist")


def test_embeddings_are_normalised_and_aligned_with_sample_ids(tiny, image_shards):
    model, _, proc = tiny
    pairs = list(iter_shard_images(image_shards))
    ids, v = embed_images(model, proc, image_shards, 32)
    assert ids == [s for s, _ in pairs] and len(set(ids)) == len(ids)
    assert v.dtype == np.float32 and v.shape == (len(ids), model.config.vision_config.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # the same samples in another order get the same vectors
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(pairs))
    ids_p, v_p = embed_images(model, proc, [pairs[i] for i in perm], 24)
    assert ids_p == [ids[i] for i in perm]
    np.testing.assert_allclose(v_p, v[perm], atol=1e-5)


def test_overlapped_batched_inference_equals_batch_size_one(tiny, image_shards):
    model, _, proc = tiny
    pairs = list(iter_shard_images(image_shards[:3]))[:40]
    ids1, v1 = embed_images(model, proc, pairs, batch_size=1, num_workers=0)
    ids2, v2 = embed_images(model, proc, pairs, batch_size=16, num_workers=2, prefetch=3)
    ids3, v3 = embed_images(model, proc, pairs, batch_size=7, num_workers=1, fast_preprocess=False)
    assert ids1 == ids2 == ids3
    assert np.abs(v1 - v2).max() <= 1e-5
    assert np.abs(v1 - v3).max() <= 1e-5


def test_fast_preprocess_equals_the_siglip2_processor(tiny, image_shards):
    _, _, proc = tiny
    images = [decode_image(b) for _, b in list(iter_shard_images(image_shards))[:30]]
    images.append(Image.new("RGBA", (50, 300), (10, 200, 30, 128)))    # transparency, extreme aspect
    images[-1] = decode_image(_png(images[-1]))
    ref = proc(images=images, return_tensors="pt")
    fast = FastSiglip2Preprocess(proc)(images)
    assert set(fast) == set(ref.keys())
    for k in ref:
        assert fast[k].dtype == ref[k].dtype and fast[k].shape == ref[k].shape
        assert (fast[k].double() - ref[k].double()).abs().max().item() <= 1e-6


def _png(im):
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _near_duplicate(data: bytes, frac: float, quality: int) -> bytes:
    im = decode_image(data)
    w, h = im.size
    cw, ch = int(w * frac), int(h * frac)
    im = im.crop((cw // 2, ch // 2, w - (cw - cw // 2), h - (ch - ch // 2)))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_near_duplicate_is_closer_to_its_original_than_to_its_family(trained, small, image_shards):
    model, proc = trained["model"], trained["image_processor"]
    assert trained["loss_last"] < trained["loss_first"]
    # planted near-duplicates of a probe would tie with it: leave every planted group out
    planted = {r["ordinal"] for g in small["truth"]["near_duplicate_groups"] for r in [g["original"], *g["duplicates"]]}
    df = small["samples"].filter(pl.col("has_image") & ~pl.col("ordinal").is_in(sorted(planted)))
    family = dict(zip(df["sample_id"], df["source"]))
    blobs = {s: b for s, b in iter_shard_images(image_shards) if s in family}
    ids, v = embed_images(model, proc, blobs.items(), 32)
    pos = {s: i for i, s in enumerate(ids)}
    by_family: dict[str, list[str]] = {}
    for s in ids:
        by_family.setdefault(family[s], []).append(s)
    probes = [(f, members[0]) for f, members in sorted(by_family.items()) if len(members) >= 4]
    assert len(probes) >= 10
    dups = [(f"{s}~{k}", _near_duplicate(blobs[s], frac, q))
            for f, s in probes for k, (frac, q) in enumerate([(0.03, 50), (0.0, 40), (0.05, 85)])]
    dup_ids, dv = embed_images(model, proc, dups, 16)
    wins, margins = 0, []
    for (f, s), d in zip([p for p in probes for _ in range(3)], dv):
        to_original = float(d @ v[pos[s]])
        to_family = max(float(d @ v[pos[o]]) for o in by_family[f] if o != s)
        margins.append(to_original - to_family)
        wins += to_original > to_family
    assert wins >= 0.9 * len(margins), (wins, len(margins), sorted(margins)[:5])
    assert float(np.median(margins)) > 0


def test_text_rows_go_through_the_text_tower(tiny, small):
    model, tok, proc = tiny
    calls = {"vision": 0, "text": 0}
    hooks = [model.vision_model.register_forward_hook(lambda *a: calls.__setitem__("vision", calls["vision"] + 1)),
             model.text_model.register_forward_hook(lambda *a: calls.__setitem__("text", calls["text"] + 1))]
    try:
        lang = embed_shards(model, tok, proc, small["shards"]["language"], batch_size=16)
    finally:
        for h in hooks:
            h.remove()
    assert calls["vision"] == 0 and calls["text"] > 0
    assert set(lang["modality"]) == {"text"}
    rows = list(iter_shard_texts(small["shards"]["language"]))
    assert lang["sample_ids"] == [s for s, _ in rows]
    np.testing.assert_allclose(lang["vectors"], embed_texts(model, tok, [t for _, t in rows]), atol=1e-6)
    chart = embed_shards(model, tok, proc, small["shards"]["chart"], batch_size=16)
    assert set(chart["modality"]) == {"image"}
    assert lang["vectors"].shape[1] == chart["vectors"].shape[1] == model.config.vision_config.hidden_size
    np.testing.assert_allclose(np.linalg.norm(lang["vectors"], axis=1), 1.0, atol=1e-5)


def test_sigmoid_loss_is_the_models_own_loss(tiny, image_shards, texts):
    model, tok, proc = tiny
    from mm_assets.embeddings.inference import decode_and_preprocess, tokenize
    from mm_assets.embeddings.model import text_max_length
    from mm_assets.embeddings.preprocess import make_preprocess

    pairs = list(iter_shard_images(image_shards))[:8]
    pix = decode_and_preprocess(make_preprocess(proc), [b for _, b in pairs])
    ids = tokenize(tok, texts[:8], text_max_length(model))
    with torch.no_grad():
        out = model(**ids, **pix, return_loss=True)
        ours = sigmoid_loss(out.image_embeds, out.text_embeds, model.logit_scale, model.logit_bias)
    assert torch.allclose(ours, out.loss, rtol=1e-5)


def test_text_augmentations_keep_numbers_and_hard_negatives_change_them():
    rng = np.random.default_rng(0)
    text = "Kevin buys 4 loaves of bread at $5.00 each.\nThe answer is 10."
    vocab = ["the", "is", "a", "of", "what", "at"]
    for _ in range(50):
        aug = augment_text(text, rng, vocab)
        assert [t for t in aug.split() if any(c.isdigit() for c in t)] == \
            [t for t in text.split() if any(c.isdigit() for c in t)]
        assert "Kevin" in aug and "bread" in aug
        neg = perturb_text(text, rng)
        assert neg != text and neg.replace("0", "").isascii()
    assert perturb_text("no digits here", rng) is None


def test_training_is_deterministic(small):
    pairs = training_pairs(small["shards"]["chart"][:1] + small["shards"]["language"][:1])
    cfg = TrainConfig(text_batch_size=8, warmup=1, num_threads=1)
    spec = TinySiglip2Spec(vision_layers=1, text_layers=1)
    a = train_tiny_siglip2(pairs, None, steps=3, batch_size=8, seed=3, config=cfg, spec=spec)
    b = train_tiny_siglip2(pairs, None, steps=3, batch_size=8, seed=3, config=cfg, spec=spec)
    sa, sb = a["model"].state_dict(), b["model"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["losses"] == b["losses"]


def test_store_round_trip_and_alignment_checks(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((25, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"s{i:03d}" for i in range(25)]
    st = Storage(str(tmp_path / "emb"))
    manifest = write_embeddings(st, ids, x, rows_per_shard=10, metadata={"model": "tiny"})
    assert len(manifest["shards"]) == 3 and manifest["normalised"] and manifest["rows"] == 25
    got_ids, got = read_embeddings(st, expected_ids=ids)
    assert got_ids == ids and np.array_equal(got, x) and got.dtype == np.float32
    with pytest.raises(EmbeddingsMismatch):
        read_embeddings(st, expected_ids=ids[::-1])
    # a shard whose sidecar no longer matches is refused
    st.write_parquet(manifest["shards"][1]["ids"], pl.DataFrame({"sample_id": ids[10:19]}))
    with pytest.raises(EmbeddingsMismatch):
        read_embeddings(st)
    with pytest.raises(ValueError):
        write_embeddings(st, ids[:-1], x)
    with pytest.raises(ValueError):
        write_embeddings(st, ids[:-1] + ids[:1], x)
    # .npy files are plain arrays: loadable without pickle
    raw = st.read_bytes(manifest["shards"][0]["npy"])
    assert np.load(io.BytesIO(raw), allow_pickle=False).shape == (10, 8)
    assert json.loads(st.read_bytes("embeddings.json"))["metadata"] == {"model": "tiny"}
