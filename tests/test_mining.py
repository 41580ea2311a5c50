"""Mining and decontamination: faiss index, neighbours, recipe decisions, and a planted leak
(re-encoded as JPEG) caught end to end with a tiny SigLIP2 on generated data."""

import json
import tarfile

import numpy as np
import polars as pl
import pytest

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS
from mm_assets.mining import (EvalEmbeddings, build_index, copies_for, decontamination_decisions,
                              decontamination_report, domain_share, eval_embeddings, eval_neighbours, gpu_count,
                              mining_decisions, nearest_eval_items, planted_leaks)


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def pool():
    """60 training rows in 3 domains and 6 eval items of 2 benchmarks."""
    rng = np.random.default_rng(0)
    train = _unit(rng.normal(size=(60, 16)))
    ids = [f"t{i:02d}" for i in range(60)]
    doms = ["chart"] * 20 + ["ocr"] * 20 + ["general"] * 20
    ev = EvalEmbeddings(["c1", "c2", "c3", "d1", "d2", "d3"], ["chartqa"] * 3 + ["docvqa"] * 3,
                        image=_unit(rng.normal(size=(6, 16))), question=_unit(rng.normal(size=(6, 16))))
    return ids, doms, train, ev


def test_index_is_exact_and_falls_back_to_cpu():
    rng = np.random.default_rng(1)
    x, q = _unit(rng.normal(size=(200, 8))), _unit(rng.normal(size=(5, 8)))
    index = build_index(x, use_gpu="auto")
    assert index.device == ("gpu" if gpu_count() else "cpu") and index.ntotal == 200
    sims, idx = index.search(q, 7)
    brute = q @ x.T
    np.testing.assert_array_equal(idx, np.argsort(-brute, axis=1)[:, :7])
    np.testing.assert_allclose(sims, np.take_along_axis(brute, idx, 1), atol=1e-5)
    assert build_index(x, use_gpu=False).device == "cpu"
    if gpu_count() == 0:
        with pytest.raises(RuntimeError, match="no GPU"):
            build_index(x, use_gpu=True)
    assert build_index(x[:3]).search(q, 10)[0].shape == (5, 3)        # k clipped to the pool


def test_eval_neighbours_are_ranked_and_honour_k(pool):
    ids, doms, train, ev = pool
    nb = eval_neighbours(ev, ids, doms, train, k=5, space="image")
    assert nb.columns == ["benchmark", "eval_item_id", "sample_id", "domain", "similarity", "rank", "space"]
    assert nb.height == 6 * 5 and set(nb["space"]) == {"image"}
    for (item,), g in nb.group_by("eval_item_id"):
        assert g["rank"].to_list() == [1, 2, 3, 4, 5]
        assert g["similarity"].to_list() == sorted(g["similarity"].to_list(), reverse=True)
        j = ev.item_ids.index(item)
        best = np.argsort(-(train @ ev.image[j]))[:5]
        assert g["sample_id"].to_list() == [ids[i] for i in best]
        assert g["domain"].to_list() == [doms[i] for i in best]
    qn = eval_neighbours(ev, ids, doms, train, k=3, space="question")
    assert qn.height == 18 and set(qn["space"]) == {"question"}
    share = domain_share(nb, k=5)
    assert set(share) == {"chartqa", "docvqa"} and all(0.0 <= v <= 1.0 for v in share.values())


def test_nearest_eval_item_is_each_samples_maximum(pool):
    ids, doms, train, ev = pool
    near = nearest_eval_items(ev, ids, doms, train, space="image")
    sims = train @ ev.image.T
    assert near["sample_id"].to_list() == ids
    np.testing.assert_allclose(near["similarity"].to_numpy(), sims.max(axis=1), atol=1e-5)
    assert near["eval_item_id"].to_list() == [ev.item_ids[j] for j in sims.argmax(axis=1)]


def test_mining_upsamples_top_k_by_the_recipe_factor(pool):
    ids, doms, train, ev = pool
    nb = eval_neighbours(ev, ids, doms, train, k=10, space="question")
    samples = pl.DataFrame({"sample_id": ids, "domain": doms})
    dec = mining_decisions(nb, samples, k=3, upsample={"chartqa": 3.0}, params_hash="m1")
    assert tuple(dec.columns) == (*STEP_DECISION_COLUMNS, "copies") and dec.height == len(ids)
    chart_top = set(nb.filter((pl.col("benchmark") == "chartqa") & (pl.col("rank") <= 3))["sample_id"])
    doc_top = set(nb.filter((pl.col("benchmark") == "docvqa") & (pl.col("rank") <= 3))["sample_id"])
    up = dec.filter(pl.col("decision") == "upsample")
    assert set(up["sample_id"]) == chart_top and set(up["copies"]) == {3}
    assert set(dec.filter(pl.col("decision") == "keep")["copies"]) == {1}
    # related_id is a chartqa item that has the sample among its top 3, score its similarity
    for r in up.iter_rows(named=True):
        hit = nb.filter((pl.col("eval_item_id") == r["related_id"]) & (pl.col("sample_id") == r["sample_id"]))
        assert hit.height == 1 and hit["rank"][0] <= 3 and hit["benchmark"][0] == "chartqa"
        assert r["score"] == pytest.approx(hit["similarity"][0])
    # docvqa has no factor: its neighbours are kept, and the reason says so
    only_doc = doc_top - chart_top
    assert only_doc and all(dec.filter(pl.col("sample_id") == s)["reason"][0].endswith("(docvqa factor 1)")
                            for s in only_doc)
    # the larger factor wins for a sample mined by both benchmarks; rank 4+ never counts
    both = mining_decisions(nb, samples, k=3, upsample={"chartqa": 2, "docvqa": 4}, params_hash="m1")
    assert set(both.filter(pl.col("sample_id").is_in(list(doc_top)))["copies"]) == {4}
    assert set(both.filter(~pl.col("sample_id").is_in(list(doc_top | chart_top)))["decision"]) == {"keep"}


def test_fractional_factor_rounds_deterministically_to_its_mean():
    copies = [copies_for(2.5, "h", f"s{i}") for i in range(4000)]
    assert set(copies) == {2, 3} and abs(np.mean(copies) - 2.5) < 0.05
    assert copies == [copies_for(2.5, "h", f"s{i}") for i in range(4000)]
    assert copies_for(3.0, "h", "x") == 3
    with pytest.raises(ValueError):
        copies_for(0.5, "h", "x")


def test_decontamination_threshold_and_disabled_mode(pool):
    ids, doms, train, ev = pool
    # plant: t05 is eval item d2's image, slightly perturbed
    train = train.copy()
    train[5] = _unit(ev.image[4] + 0.01 * np.random.default_rng(2).normal(size=16))
    near = nearest_eval_items(ev, ids, doms, train, space="image")
    samples = pl.DataFrame({"sample_id": ids + ["lang-1"], "domain": doms + ["language"]})
    dec = decontamination_decisions(near, samples, threshold=0.99, enabled=True, params_hash="d1")
    assert tuple(dec.columns) == STEP_DECISION_COLUMNS and dec.height == samples.height
    dropped = dec.filter(pl.col("decision") == "drop")
    assert dropped["sample_id"].to_list() == ["t05"] and dropped["related_id"].to_list() == ["d2"]
    assert dropped["score"][0] >= 0.99 and "docvqa item d2" in dropped["reason"][0]
    lang = dec.filter(pl.col("sample_id") == "lang-1").row(0, named=True)
    assert lang["decision"] == "keep" and lang["related_id"] is None and lang["reason"].startswith("no image")
    off = decontamination_decisions(near, samples, threshold=0.99, enabled=False, params_hash="d1")
    assert set(off["decision"]) == {"keep"}
    assert off.filter(pl.col("sample_id") == "t05")["reason"][0].startswith("would be removed")
    # the same answer from a neighbours table (max similarity per sample)
    nb = eval_neighbours(ev, ids, doms, train, k=60, space="image")
    via_nb = decontamination_decisions(nb, samples, threshold=0.99, enabled=True, params_hash="d1")
    assert via_nb.filter(pl.col("decision") == "drop")["sample_id"].to_list() == ["t05"]


@pytest.fixture(scope="module")
def leaked_data(tmp_path_factory):
    """Small generated data: every planted leak's training image (some re-encoded as JPEG),
    other training images, and the eval sets in the uniform schema."""
    from mm_assets.sample_data import generate_sample_data
    from mm_assets.sources.eval_sets import load_eval_set
    from mm_assets.storage import Storage
    from mm_assets.taxonomy import BENCHMARKS

    root = tmp_path_factory.mktemp("mining_data")
    generate_sample_data(root, scale="demo", seed=0, _records_per_domain=12, _eval_items=6)
    truth = json.loads((root / "truth" / "planted_truth.json").read_text())
    records = json.loads((root / "main" / "mammoth_si.json").read_text())
    images = {}
    for tarball in sorted((root / "main" / "images").glob("*.tar.gz")):
        with tarfile.open(tarball) as tar:
            images.update({m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar if m.isfile()})
    rows = [{"sample_id": f"main-{o}", "source_name": "main", "ordinal": o, "image": images[r["image"]]}
            for o, r in enumerate(records) if r.get("image") in images]
    items = pl.concat([load_eval_set(Storage(str(root / "eval")), b)[0] for b in BENCHMARKS])
    return {"truth": truth, "train": pl.DataFrame(rows), "items": items}


def test_reencoded_leaked_eval_item_is_removed(leaked_data):
    from mm_assets.embeddings import build_tiny_siglip2, embed_images

    truth, train, items = leaked_data["truth"], leaked_data["train"], leaked_data["items"]
    assert any(x["reencoded"] for x in truth["leaked_eval_items"])
    model, tok, proc = build_tiny_siglip2(seed=0, texts=items["question"].to_list())
    ev = eval_embeddings(model, tok, proc, items, num_workers=0, num_threads=1)
    assert ev.image.shape == ev.question.shape == (items.height, model.config.vision_config.hidden_size)
    ids, vecs = embed_images(model, proc, list(zip(train["sample_id"], train["image"])), 32,
                             num_workers=0, num_threads=1)
    near = nearest_eval_items(ev, ids, ["any"] * len(ids), vecs, space="image")
    samples = pl.DataFrame({"sample_id": ids, "domain": ["any"] * len(ids)})
    leaks = planted_leaks(truth, train, items)
    assert leaks.height == len(truth["leaked_eval_items"]) and leaks["eval_item_id"].null_count() == 0
    # each leak's nearest eval item is the item it copies, re-encoded or not (or, for DocVQA,
    # the other question on the same document: the same image)
    sha = dict(zip(items["item_id"], items["image_sha256"]))
    got = leaks.join(near.select("sample_id", pl.col("eval_item_id").alias("nearest")), on="sample_id")
    assert all(sha[a] == sha[b] for a, b in zip(got["nearest"], got["eval_item_id"]))
    # a threshold just under the least similar leak removes them all, re-encoded ones included
    threshold = float(near.filter(pl.col("sample_id").is_in(leaks["sample_id"].to_list()))["similarity"].min())
    dec = decontamination_decisions(near, samples, threshold=threshold - 1e-6, enabled=True, params_hash="d")
    rep = decontamination_report(dec, leaks)
    assert rep["recall"] == 1.0 and rep["caught_reencoded"] == rep["planted_reencoded"] > 0
    assert rep["removed"] < len(ids) / 2
