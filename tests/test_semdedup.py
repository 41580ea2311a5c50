"""SemDeDup module: blocked keep rule vs a plain full-Gram reference, eps-for-target,
memory bound of the pairwise step, spherical k-means, report helpers."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest

from mm_assets.dedup import (eps_for_target, eps_for_target_result, keep_mask_from_scores,
                             plot_removal_vs_eps, precision_recall_vs_groups, removal_curve,
                             removal_for_eps, semdedup_keep_mask, semdedup_scores,
                             semdedup_scores_with_argmax, spherical_kmeans)
from mm_assets.dedup.semdedup import PairwiseWorkspace, score_ordered

EPS_LIST = (0.001, 0.01, 0.05, 0.1)


# ----------------------------------------------------------------------------- reference


def reference_keep_mask(x, labels, centroids, eps, keep, seed=0):
    """The note's section 1 step 4, written plainly: full float32 Gram matrix per cluster."""
    n = len(x)
    kept = np.ones(n, dtype=bool)
    t = np.float32(1 - eps)
    for cid in np.unique(labels):
        members = np.flatnonzero(labels == cid)  # ascending dataset index
        if len(members) == 1:
            continue
        if keep == "random":
            order = members[np.random.default_rng([seed, int(cid)]).permutation(len(members))]
        else:
            c = centroids[cid].astype(np.float64)
            c = c / np.linalg.norm(c)
            key = {int(i): np.float32(1) - np.float32(np.dot(x[i].astype(np.float64), c))
                   for i in members}
            hard = sorted(members.tolist(), key=lambda i: key[i], reverse=True)  # stable
            order = np.array(hard if keep == "hardest" else hard[::-1])
        xc = x[order]
        gram = xc @ xc.T  # float32
        np.fill_diagonal(gram, 0)
        gram = np.triu(gram, k=1)  # everything but the strict upper triangle -> 0
        m = gram.max(axis=0)
        kept[order] = ~(m > t)
    return kept


def reference_scores(x, labels, centroids, keep, seed=0):
    """Plain M_j (for comparing scores with a tolerance)."""
    out = np.zeros(len(x), dtype=np.float32)
    for cid in np.unique(labels):
        members = np.flatnonzero(labels == cid)
        if len(members) == 1:
            continue
        c = centroids[cid].astype(np.float64)
        c = c / np.linalg.norm(c)
        key = {int(i): np.float32(1) - np.float32(np.dot(x[i].astype(np.float64), c)) for i in members}
        order = np.array(sorted(members.tolist(), key=lambda i: key[i], reverse=True))
        if keep == "easiest":
            order = order[::-1]
        xc = x[order]
        gram = np.triu(xc @ xc.T, k=1)
        out[order] = gram.max(axis=0)
    return out


def planted(n, d, topics, seed, dup_frac=0.25, exact_frac=0.03):
    """Unit rows around ``topics`` directions, with planted near and exact duplicates."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((topics, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(0, topics, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    n_dup = int(dup_frac * n)
    dst = rng.choice(n, n_dup, replace=False)
    src = rng.integers(0, n, n_dup)
    noise = rng.uniform(0.0, 0.5, n_dup).astype(np.float32)[:, None] / np.sqrt(d)
    x[dst] = x[src] + noise * rng.standard_normal((n_dup, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    n_ex = int(exact_frac * n)
    x[rng.choice(n, n_ex, replace=False)] = x[rng.integers(0, n, n_ex)]  # bit-identical copies
    return np.ascontiguousarray(x, dtype=np.float32)


def argmax_labels(x, k, seed):
    rng = np.random.default_rng(seed + 100)
    cent = x[rng.choice(len(x), k, replace=False)] + 0.01 * rng.standard_normal((k, x.shape[1]))
    cent = cent.astype(np.float32)
    labels = np.argmax(x @ (cent / np.linalg.norm(cent, axis=1, keepdims=True)).T, axis=1)
    return labels.astype(np.int64), cent  # centroids deliberately not unit norm


DATASETS = [  # n, d, k, topics, seed, block_size, row_chunk
    (1500, 32, 3, 3, 1, 64, 200),
    (2500, 64, 6, 5, 2, 128, 300),
    (1200, 128, 40, 8, 3, 16, 16),
    (3000, 48, 2, 2, 4, 1024, 16384),
]


@pytest.fixture(scope="module", params=DATASETS, ids=lambda p: f"n{p[0]}-d{p[1]}-k{p[2]}")
def dataset(request):
    n, d, k, topics, seed, block, rows = request.param
    x = planted(n, d, topics, seed)
    labels, cent = argmax_labels(x, k, seed)
    return x, labels, cent, block, rows


# ----------------------------------------------------------------------------- bit-for-bit


@pytest.mark.parametrize("keep", ["hardest", "easiest", "random"])
def test_matches_reference_bit_for_bit(dataset, keep):
    x, labels, cent, block, rows = dataset
    sizes = np.bincount(labels)
    assert sizes.max() > block or block >= 1024  # blocks smaller than clusters exercised
    scores, dup_of = semdedup_scores_with_argmax(x, labels, cent, keep=keep, seed=7,
                                                 block_size=block, row_chunk=rows)
    removed_any = 0
    for eps in EPS_LIST:
        ref = reference_keep_mask(x, labels, cent, eps, keep, seed=7)
        got = semdedup_keep_mask(x, labels, cent, eps, keep=keep, seed=7, block_size=block,
                                 row_chunk=rows)
        assert got.dtype == bool and got.shape == (len(x),)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(keep_mask_from_scores(scores, eps), ref)
        removed_any += int((~ref).sum())
    assert removed_any > 0
    # dup_of points at an earlier member of the same cluster, whose similarity is the score
    has = dup_of >= 0
    assert np.all(labels[dup_of[has]] == labels[has])
    sims = np.einsum("ij,ij->i", x[has], x[dup_of[has]])
    np.testing.assert_allclose(np.maximum(sims, 0), scores[has], atol=2e-6)


def test_scores_match_reference_and_blocking_invariance(dataset):
    x, labels, cent, block, rows = dataset
    ref = reference_scores(x, labels, cent, "hardest")
    a = semdedup_scores(x, labels, cent, block_size=block, row_chunk=rows)
    b = semdedup_scores(x, labels, cent, block_size=4096)
    np.testing.assert_allclose(a, ref, atol=2e-6, rtol=0)
    np.testing.assert_allclose(a, b, atol=2e-6, rtol=0)
    assert a.dtype == np.float32


def test_random_mode_independent_of_cluster_split():
    """The random order of a cluster depends only on (seed, cluster id, members)."""
    x = planted(1200, 32, 4, seed=5)
    labels, cent = argmax_labels(x, 4, 5)
    full = semdedup_scores(x, labels, None, keep="random", seed=3, block_size=32)
    for cid in range(4):  # one "worker" per cluster
        sel = np.flatnonzero(labels == cid)
        part = semdedup_scores(x[sel], labels[sel], None, keep="random", seed=3, block_size=32)
        np.testing.assert_array_equal(part, full[sel])
    other = semdedup_scores(x, labels, None, keep="random", seed=4, block_size=32)
    assert not np.array_equal(other, full)


# ----------------------------------------------------------------------------- small exact cases


def _unit_angles(deg):
    a = np.deg2rad(np.asarray(deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_chain_drops_b_and_c():
    # angles 0, 5, 10 degrees: cos 5 = 0.9962 > 0.99 > cos 10 = 0.9848
    x = _unit_angles([0, 5, 10])
    labels = np.zeros(3, np.int64)
    cent = np.array([[0.0, 1.0]], np.float32)  # a is farthest -> first for "hardest"
    keep = semdedup_keep_mask(x, labels, cent, 0.01)
    assert keep.tolist() == [True, False, False]  # a greedy rule would keep c
    _, dup = semdedup_scores_with_argmax(x, labels, cent)
    assert dup.tolist() == [-1, 0, 1]
    assert reference_keep_mask(x, labels, cent, 0.01, "hardest").tolist() == [True, False, False]
    # easiest: order c, b, a -> b and a dropped
    assert semdedup_keep_mask(x, labels, cent, 0.01, keep="easiest").tolist() == [False, False, True]


def test_clique_keeps_only_first():
    x = _unit_angles([0, 0.5, 1.0, 1.5, 60])
    labels = np.zeros(5, np.int64)
    cent = np.array([[0.0, 1.0]], np.float32)
    assert semdedup_keep_mask(x, labels, cent, 0.01).tolist() == [True, False, False, False, True]
    assert semdedup_keep_mask(x, labels, cent, 0.01, keep="easiest").tolist() == [
        False, False, False, True, True]


def test_threshold_is_float32_and_strict():
    assert float(np.float32(1 - 0.01)) == pytest.approx(0.99000000954, abs=1e-11)
    assert float(np.float32(1 - 0.1)) == pytest.approx(0.89999997616, abs=1e-11)
    t = np.float32(1 - 0.01)
    x = np.zeros((2, 4), np.float32)
    x[0, 0] = 1.0
    x[1, 0] = t
    x[1, 1] = np.float32(np.sqrt(1 - float(t) ** 2))
    labels = np.zeros(2, np.int64)
    cent = np.array([[0.0, 1.0, 0.0, 0.0]], np.float32)  # x0 is farther -> first
    scores = semdedup_scores(x, labels, cent)
    assert scores[1] == t  # similarity exactly at the threshold
    assert semdedup_keep_mask(x, labels, cent, 0.01).tolist() == [True, True]  # strict >
    assert removal_for_eps(scores, 0.01) == 0
    eps_just_above = 1 - float(np.nextafter(t, np.float32(0)))
    assert semdedup_keep_mask(x, labels, cent, eps_just_above).tolist() == [True, False]


def test_centroid_key_ties_by_index():
    # identical <x, c> = 0.6 for all three (exact in float32), mutually similar
    x = np.zeros((3, 4), np.float32)
    x[:, 0] = np.float32(0.6)
    x[0, 1:3] = [0.8, 0.0]
    x[1, 1:3] = [0.79, 0.1]
    x[2, 1:3] = [0.78, 0.15]
    x[1] /= np.float32(np.linalg.norm(x[1]))
    x[2] /= np.float32(np.linalg.norm(x[2]))
    x[:, 0] = np.float32(0.6)  # keep the key exactly tied
    labels = np.zeros(3, np.int64)
    cent = np.array([[1.0, 0, 0, 0]], np.float32)
    _, dup_h = semdedup_scores_with_argmax(x, labels, cent, keep="hardest")
    _, dup_e = semdedup_scores_with_argmax(x, labels, cent, keep="easiest")
    assert dup_h.tolist() == [-1, 0, 0] or dup_h.tolist() == [-1, 0, 1]
    assert dup_h[0] == -1  # lowest index first for hardest
    assert dup_e[2] == -1  # highest index first for easiest
    assert semdedup_keep_mask(x, labels, cent, 0.1, keep="hardest").tolist() == [True, False, False]
    assert semdedup_keep_mask(x, labels, cent, 0.1, keep="easiest").tolist() == [False, False, True]


def test_singletons_kept_and_negative_similarities_clipped():
    x = _unit_angles([0, 180, 90, 45])  # cluster 0: opposite pair; clusters 1, 2: singletons
    labels = np.array([0, 0, 1, 2], np.int64)
    cent = np.array([[1, 0.1], [0, 1], [1, 1]], np.float32)
    scores, dup = semdedup_scores_with_argmax(x, labels, cent)
    assert scores.tolist() == [0.0, 0.0, 0.0, 0.0]  # -1 clipped to 0
    assert dup[2] == -1 and dup[3] == -1
    assert semdedup_keep_mask(x, labels, cent, 0.5).all()
    # eps > 1: threshold < 0, every member of a non-singleton cluster goes (the reference
    # would keep the second one here without clipping); singletons stay
    assert semdedup_keep_mask(x, labels, cent, 1.2).tolist() == [False, False, True, True]
    assert reference_keep_mask(x, labels, cent, 1.2, "hardest").tolist() == [False, False, True, True]


def test_input_validation():
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError):
        semdedup_keep_mask(x, np.array([0, 1, 5]), np.eye(3, dtype=np.float32), 0.1)
    with pytest.raises(ValueError):
        semdedup_keep_mask(x, np.array([0, 0, 0]), np.eye(3, dtype=np.float32), 0.1, keep="greedy")
    assert semdedup_keep_mask(np.zeros((0, 3), np.float32), np.zeros(0, np.int64),
                              np.eye(3, dtype=np.float32), 0.1).shape == (0,)


# ----------------------------------------------------------------------------- eps for target


@pytest.fixture(scope="module")
def continuous_case():
    x = planted(12000, 64, 8, seed=11, dup_frac=0.45, exact_frac=0.0)
    labels, cent = argmax_labels(x, 12, 11)
    return x, labels, cent, semdedup_scores(x, labels, cent)


@pytest.mark.parametrize("target", [0.05, 0.10, 0.30])
def test_eps_for_target_continuous(continuous_case, target):
    x, labels, cent, scores = continuous_case
    res = eps_for_target_result(scores, target)
    n = len(x)
    assert abs(res.achieved_count / n - target) <= 0.001
    assert res.achieved_count == res.target_count and res.exact
    assert eps_for_target(scores, target) == res.eps
    assert res.threshold == float(np.float32(1 - res.eps))
    keep = semdedup_keep_mask(x, labels, cent, res.eps)  # the real rule at that eps
    assert int((~keep).sum()) == res.achieved_count == removal_for_eps(scores, res.eps)


def test_eps_nested_removal(continuous_case):
    x, labels, cent, scores = continuous_case
    prev = np.zeros(len(x), bool)
    counts = []
    for eps in [0.0005, 0.005, 0.02, 0.05, 0.1, 0.3]:
        removed = ~semdedup_keep_mask(x, labels, cent, eps)
        assert np.all(removed[prev])  # superset of the smaller eps's removals
        prev = removed
        counts.append(int(removed.sum()))
    assert counts == sorted(counts) and counts[-1] > counts[0]
    curve = removal_curve(scores, [0.0005, 0.005, 0.02, 0.05, 0.1, 0.3])
    assert [round(f * len(x)) for _, f in curve] == counts


def test_eps_for_target_heavy_ties():
    # exact duplicates pile up at 1 (+- ulp); 300 tied at exactly 1.0, then a continuum
    rng = np.random.default_rng(0)
    n = 2000
    scores = np.zeros(n, np.float32)
    scores[:300] = 1.0
    scores[300:310] = np.nextafter(np.float32(1), np.float32(2))  # 1 + ulp
    scores[310:900] = rng.uniform(0.2, 0.95, 590).astype(np.float32)
    rng.shuffle(scores)
    # 10% = 200: inside the tie block [11, 310] -> nearest reachable is 310 (|110|) vs 10 (|190|)
    res = eps_for_target_result(scores, 0.10)
    assert res.target_count == 200 and res.achieved_count == 310 and not res.exact
    assert removal_for_eps(scores, res.eps) == 310
    res = eps_for_target_result(scores, 0.05)  # 100: 10 (|90|) is nearer than 310 (|210|)
    assert res.achieved_count == 10 and not res.exact
    res = eps_for_target_result(scores, 0.0)
    assert res.achieved_count == 0 and res.exact and res.eps <= 0
    res = eps_for_target_result(scores, 0.6)  # beyond the 900 removable samples
    assert res.achieved_count == 900 and res.removable == 900 and not res.exact
    assert res.threshold >= 0  # zero scores (singletons, first members) never removed
    res = eps_for_target_result(scores, 0.25)  # 500: continuous part -> exact
    assert res.achieved_count == 500 and res.exact
    t = np.float32(res.threshold)
    srt = np.sort(scores)[::-1]
    assert srt[500] <= t < srt[499]


def test_eps_for_target_edge_cases():
    assert eps_for_target_result(np.zeros(10, np.float32), 0.5).achieved_count == 0
    res = eps_for_target_result(np.array([0.5, 0.5, 0.5, 0], np.float32), 0.5)
    assert res.achieved_count in (0, 3) and not res.exact
    res = eps_for_target_result(np.array([0.9], np.float32), 1.0)
    assert res.achieved_count == 1 and res.exact


# ----------------------------------------------------------------------------- memory


def test_pairwise_memory_is_blocked():
    s, d = 20000, 64
    rng = np.random.default_rng(0)
    x = rng.standard_normal((s, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sc = np.empty(s, np.float32)
    ar = np.empty(s, np.int64)
    tracemalloc.start()
    try:
        ws = PairwiseWorkspace(d, s, 1024, 16384)
        score_ordered(x, ws, sc, ar)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full = s * s * 4  # 1.6 GB
    assert peak < 200e6, peak  # work buffer 1024 x 16384 floats + the ordered copy
    assert peak < full / 8
    # spot check against a direct computation for a few columns
    for j in (1, 1023, 1024, 5000, 19999):
        assert sc[j] == pytest.approx(max(0.0, float((x[:j] @ x[j]).max())), abs=2e-6)
    # and the whole public path on one cluster stays well below the Gram size too
    tracemalloc.start()
    try:
        semdedup_scores(x, np.zeros(s, np.int64), np.ones((1, d), np.float32))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 250e6, peak


# ----------------------------------------------------------------------------- k-means


def test_spherical_kmeans():
    x = planted(4000, 32, 10, seed=21)
    labels, cent, info = spherical_kmeans(x, 10, niter=10, seed=5, max_points_per_centroid=100)
    assert labels.dtype == np.int64 and labels.shape == (4000,)
    assert cent.dtype == np.float32 and cent.shape == (10, 32)
    np.testing.assert_allclose(np.linalg.norm(cent, axis=1), 1.0, atol=1e-5)
    ip = x @ cent.T
    assert np.all(ip[np.arange(len(x)), labels] >= ip.max(axis=1) - 1e-5)  # argmax IP
    assert (labels == ip.argmax(axis=1)).mean() > 0.999
    assert info["n_train"] == 1000 and not info["k_clipped"]
    labels2, cent2, _ = spherical_kmeans(x, 10, niter=10, seed=5, max_points_per_centroid=100)
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_array_equal(cent, cent2)


def test_spherical_kmeans_k_larger_than_n():
    x = planted(20, 8, 2, seed=1)
    labels, cent, info = spherical_kmeans(x, 50, niter=5)
    assert info["k_clipped"] and info["k"] == 20 and info["k_requested"] == 50
    assert cent.shape == (20, 8) and "clipped" in info["message"]
    assert labels.max() < 20


# ----------------------------------------------------------------------------- reports


def test_removal_curve_and_plot(continuous_case):
    _, _, _, scores = continuous_case
    curve = removal_curve(scores, [0.001, 0.01, 0.1])
    assert [e for e, _ in curve] == [0.001, 0.01, 0.1]
    assert curve[0][1] <= curve[1][1] <= curve[2][1]
    assert curve[1][1] == removal_for_eps(scores, 0.01) / len(scores)
    buf = io.BytesIO()
    plot_removal_vs_eps(scores, buf, target=0.1, chosen_eps=eps_for_target(scores, 0.1))
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_precision_recall_vs_groups():
    ids = [f"s{i}" for i in range(10)]
    groups = [["s0", "s1", "s2"], ["s3", "s4"], ["s5", "missing"]]
    # planted removable: 2 + 1 + 0 = 3
    removed = np.zeros(10, bool)
    removed[[1, 2, 3, 4, 9]] = True  # group0: 2 of 3 (ok); group1 fully removed; s9 outside
    pr = precision_recall_vs_groups(removed, ids, groups)
    assert pr["planted_removable"] == 3
    assert pr["true_positives"] == 3  # 2 + min(2, 1)
    assert pr["false_positives"] == 2 and pr["removed_outside_groups"] == 1
    assert pr["groups_fully_removed"] == 1
    assert pr["precision"] == pytest.approx(3 / 5) and pr["recall"] == 1.0
    none = precision_recall_vs_groups(np.zeros(10, bool), ids, groups)
    assert none["precision"] == 1.0 and none["recall"] == 0.0
    with pytest.raises(ValueError):
        precision_recall_vs_groups(removed, ids, [["s0"], ["s0", "s1"]])
