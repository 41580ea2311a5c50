"""Image-text relevance flag: scores, the flag rule, decisions (synthetic vectors + a tiny SigLIP2)."""

import numpy as np
import polars as pl
import pytest

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS
from mm_assets.relevance import (catch_report, embed_questions, flag_unrelated, question_text, relevance_decisions,
                                 relevance_scores, robust_z)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def synthetic_domain(n=200, d=32, clusters=4, unrelated=(3, 50, 77, 120, 199), seed=0):
    """Images in clusters (chart types); a related question leans towards its image's
    cluster and its own image; an unrelated one is one generic text for any image."""
    rng = np.random.default_rng(seed)
    centers = _unit(rng.normal(size=(clusters, d)))
    of = rng.integers(0, clusters, size=n)
    images = _unit(centers[of] + 0.25 * rng.normal(size=(n, d)))
    questions = _unit(centers[of] + 0.5 * images + 0.2 * rng.normal(size=(n, d)))
    g = rng.normal(size=d)                      # generic text: about none of the image types
    basis, _ = np.linalg.qr(centers.T)
    generic = _unit(g - basis @ (basis.T @ g))
    for i in unrelated:
        questions[i] = _unit(generic + 0.02 * rng.normal(size=d))
    ids = [f"s{i:04d}" for i in range(n)]
    return ids, questions.astype(np.float32), images.astype(np.float32), [ids[i] for i in unrelated]


@pytest.fixture(scope="module")
def two_domains():
    ids_a, q_a, i_a, bad_a = synthetic_domain(seed=0)
    ids_b, q_b, i_b, _ = synthetic_domain(seed=1, unrelated=())
    ids_b = [f"b{s}" for s in ids_b]
    ids = ids_a + ids_b
    doms = ["chart"] * len(ids_a) + ["ocr"] * len(ids_b)
    return ids, doms, np.concatenate([q_a, q_b]), np.concatenate([i_a, i_b]), bad_a


def test_scores_are_per_domain_and_leave_the_own_image_out(two_domains):
    ids, doms, q, img, _ = two_domains
    sc = relevance_scores(ids, doms, q, img, reference_size=64, seed=3)
    assert sc["sample_id"].to_list() == ids and sc.height == len(ids)
    np.testing.assert_allclose(sc["similarity"].to_numpy(), np.einsum("ij,ij->i", q, img), atol=1e-6)
    # with every image of the domain as reference, the statistics are exactly those of the others
    full = relevance_scores(ids, doms, q, img, reference_size=10_000)
    i = 7
    others = np.delete(q[i] @ img[:200].T, i)
    assert full["references"][i] == 199
    assert full["specificity"][i] == pytest.approx(others.std(), abs=1e-5)
    assert full["calibrated"][i] == pytest.approx((q[i] @ img[i] - others.mean()) / others.std(), abs=1e-4)
    # robust z within the domain
    chart = full.filter(pl.col("domain") == "chart")
    np.testing.assert_allclose(chart["specificity_z"].to_numpy(), robust_z(chart["specificity"].to_numpy()))


@pytest.mark.parametrize("rule", ["specificity", "calibrated", "either"])
def test_unrelated_questions_are_flagged_and_related_ones_are_not(two_domains, rule):
    ids, doms, q, img, bad = two_domains
    flags = flag_unrelated(relevance_scores(ids, doms, q, img), rule=rule, z_threshold=-2.5, max_flag_rate=0.05)
    assert set(flags.columns) >= {"sample_id", "domain", "similarity", "flagged", "reason", "score"}
    flagged = set(flags.filter(pl.col("flagged"))["sample_id"].to_list())
    assert set(bad) <= flagged
    rep = catch_report(flags, bad)
    assert rep["catch_rate"] == 1.0 and rep["flag_rate"] <= 0.05
    for d, v in rep["per_domain"].items():
        assert v["flagged"] <= int(0.05 * v["rows"])
    assert flags.filter(pl.col("sample_id") == bad[0])["reason"][0].startswith("question unrelated to its image")
    assert flags.filter(pl.col("sample_id") == "s0000")["reason"][0].startswith("question related")


def test_flag_budget_caps_each_domain(two_domains):
    ids, doms, q, img, bad = two_domains
    sc = relevance_scores(ids, doms, q, img)
    flags = flag_unrelated(sc, max_flag_rate=0.01)          # 200 rows -> at most 2 flags
    chart = flags.filter(pl.col("domain") == "chart")
    assert int(chart["flagged"].sum()) == 2
    worst = chart.sort("score").head(2)["sample_id"].to_list()
    assert set(worst) == set(chart.filter(pl.col("flagged"))["sample_id"].to_list())
    over = chart.filter(~pl.col("flagged") & pl.col("sample_id").is_in(bad))
    assert over.height == len(bad) - 2 and all("flag budget" in r for r in over["reason"])
    with pytest.raises(ValueError):
        flag_unrelated(sc, rule="nonsense")


def test_decisions_cover_the_pool(two_domains):
    ids, doms, q, img, bad = two_domains
    flags = flag_unrelated(relevance_scores(ids, doms, q, img))
    pool = pl.DataFrame({"sample_id": ids + ["text-only-1"], "domain": doms + ["language"]})
    dec = relevance_decisions(flags, pool, remove=True, params_hash="p1")
    assert tuple(dec.columns) == STEP_DECISION_COLUMNS and dec.height == pool.height
    assert set(dec.filter(pl.col("decision") == "drop")["sample_id"]) == set(flags.filter(pl.col("flagged"))["sample_id"])
    text = dec.filter(pl.col("sample_id") == "text-only-1").row(0, named=True)
    assert text["decision"] == "keep" and text["reason"].startswith("no image") and text["score"] is None
    kept = relevance_decisions(flags, pool, remove=False, params_hash="p1")
    assert set(kept["decision"]) == {"keep"}
    assert kept.filter(pl.col("sample_id") == bad[0])["reason"][0].startswith("flagged, kept")
    assert set(dec["params_hash"]) == {"p1"}


def test_embed_questions_uses_the_text_tower_on_the_bare_question():
    from mm_assets.embeddings import build_tiny_siglip2, embed_texts

    texts = ["What is the value of Spain?", "Convert the chart to a data table.", "How many stars are there?"]
    model, tok, _ = build_tiny_siglip2(seed=0, texts=texts)
    samples = pl.DataFrame({"sample_id": ["a", "b", "c"],
                            "question": ["<image>\nWhat is the value of Spain?", texts[1], texts[2] + "\n<image>"]})
    ids, v = embed_questions(model, tok, samples, num_threads=1)
    assert ids == ["a", "b", "c"] and v.shape == (3, model.config.text_config.projection_size)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v, embed_texts(model, tok, texts, num_threads=1), atol=1e-6)
    assert question_text("<image>\n  Q? ") == "Q?"
