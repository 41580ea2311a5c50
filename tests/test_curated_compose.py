"""Composing step decisions into a curated dataset: ledger, domain weights, WebDataset shards."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from mm_assets.curated.compose import DecisionError, compose, weight_copies
from mm_assets.curated.ledger import FINAL_STEP, LEDGER_SCHEMA, STEP_DECISION_COLUMNS
from mm_assets.curated.writer import write_curated_shards
from mm_assets.storage import Storage
from mm_assets.webdataset_io import read_shard, write_shard

REPO_ROOT = Path(__file__).resolve().parent.parent


def decisions(rows, params_hash="p0", domain="chart") -> pl.DataFrame:
    """A step's decisions table from (sample_id, decision, reason[, score[, related_id]]) tuples."""
    full = [(r[0], domain, params_hash, r[3] if len(r) > 3 else 0.5, r[1], r[2], r[4] if len(r) > 4 else None)
            for r in rows]
    return pl.DataFrame(full, schema={"sample_id": pl.String, "domain": pl.String, "params_hash": pl.String,
                                      "score": pl.Float64, "decision": pl.String, "reason": pl.String,
                                      "related_id": pl.String}, orient="row").select(STEP_DECISION_COLUMNS)


def ledger_row(ledger: pl.DataFrame, sid: str, step: str) -> dict:
    rows = ledger.filter((pl.col("sample_id") == sid) & (pl.col("step") == step))
    assert rows.height == 1, rows
    return rows.row(0, named=True)


IDS = ["a", "b", "c", "d", "e"]


def two_steps():
    semdedup = decisions([
        ("e", "keep", "cluster representative", 0.1),
        ("b", "drop", "near-duplicate of a", 0.99, "a"),
        ("a", "keep", "cluster representative", 0.2),
        ("d", "drop", "near-duplicate of c", 0.97, "c"),
        ("c", "keep", "cluster representative", 0.3),
    ], params_hash="sd1")
    perplexity = decisions([
        ("a", "keep", "perplexity 12.0 in the kept 80 %", 12.0),
        ("b", "drop", "perplexity 900 above the cut", 900.0),
        ("c", "drop", "perplexity 450 above the cut", 450.0),
        ("d", "keep", "perplexity 15 in the kept 80 %", 15.0),
        ("e", "rewrite", "rephrased", 20.0),
    ], params_hash="pp1")
    return [("semdedup", semdedup), ("perplexity", perplexity)]


# --------------------------------------------------------------------------------------------
# compose
# --------------------------------------------------------------------------------------------

def test_a_sample_leaves_at_the_first_step_that_drops_it():
    ledger, copies = compose(IDS, "v0", two_steps())
    assert copies == {"a": 1, "b": 0, "c": 0, "d": 0, "e": 1}
    final = {r["sample_id"]: r for r in ledger.filter(pl.col("step") == FINAL_STEP).iter_rows(named=True)}
    # b is dropped by both steps: the first one is the reason
    assert final["b"]["decision"] == "out"
    assert final["b"]["reason"] == "dropped by semdedup: near-duplicate of a"
    assert "perplexity" not in final["b"]["reason"]
    assert final["d"]["reason"] == "dropped by semdedup: near-duplicate of c"
    assert final["c"]["reason"] == "dropped by perplexity: perplexity 450 above the cut"
    assert final["a"]["decision"] == final["e"]["decision"] == "in"        # rewrite is not a drop
    assert final["a"]["reason"] == "in the curated dataset"
    # every step still records its own decision for every sample (decided on the full pool)
    assert ledger_row(ledger, "b", "perplexity")["decision"] == "drop"
    assert ledger_row(ledger, "b", "perplexity")["reason"] == "perplexity 900 above the cut"
    sd_b = ledger_row(ledger, "b", "semdedup")
    assert (sd_b["params_hash"], sd_b["score"], sd_b["related_id"]) == ("sd1", 0.99, "a")
    assert ledger_row(ledger, "e", "perplexity")["decision"] == "rewrite"
    fin = ledger_row(ledger, "a", FINAL_STEP)
    assert fin["params_hash"] is None and fin["score"] is None and fin["related_id"] is None


def test_ledger_has_one_row_per_sample_per_step_plus_curated():
    ledger, _ = compose(IDS, "v0", two_steps())
    assert dict(ledger.schema) == LEDGER_SCHEMA
    assert ledger.height == len(IDS) * 3
    counts = ledger.group_by("sample_id", "step").len()
    assert counts["len"].to_list() == [1] * counts.height
    assert set(counts["sample_id"]) == set(IDS)
    assert ledger.unique("step", maintain_order=True)["step"].to_list() == ["semdedup", "perplexity", FINAL_STEP]
    assert set(ledger["recipe"]) == {"v0"}
    assert ledger.filter(pl.col("step") == FINAL_STEP)["sample_id"].to_list() == IDS


def test_step_order_decides_the_reason():
    steps = two_steps()
    ledger, copies = compose(IDS, "v0", steps[::-1])
    assert copies == {"a": 1, "b": 0, "c": 0, "d": 0, "e": 1}
    assert ledger_row(ledger, "b", FINAL_STEP)["reason"] == "dropped by perplexity: perplexity 900 above the cut"
    assert ledger.unique("step", maintain_order=True)["step"].to_list() == ["perplexity", "semdedup", FINAL_STEP]


def test_decisions_for_samples_outside_the_pool_are_ignored():
    semdedup, perplexity = (d for _, d in two_steps())
    extra = pl.concat([semdedup, decisions([("zz", "drop", "other domain")])])
    ledger, copies = compose(IDS, "v0", [("semdedup", extra), ("perplexity", perplexity)])
    assert "zz" not in set(ledger["sample_id"]) and "zz" not in copies
    assert ledger.height == len(IDS) * 3


@pytest.mark.parametrize("which", [0, 1])
def test_a_sample_without_a_decision_is_an_error(which):
    steps = two_steps()
    kind, table = steps[which]
    steps[which] = (kind, table.filter(pl.col("sample_id") != "c"))
    with pytest.raises(DecisionError) as info:
        compose(IDS, "v0", steps)
    msg = str(info.value)
    assert kind in msg
    assert "c" in msg.split("e.g.", 1)[1].split()[0]
    assert "no decision for 1 sample" in msg
    if which == 1:
        assert "semdedup" not in msg


def test_a_null_decision_is_an_error():
    steps = two_steps()
    kind, table = steps[1]
    steps[1] = (kind, table.with_columns(
        pl.when(pl.col("sample_id") == "d").then(None).otherwise(pl.col("decision")).alias("decision")))
    with pytest.raises(DecisionError, match=r"perplexity: no decision for 1 sample\(s\), e\.g\. d\b"):
        compose(IDS, "v0", steps)


def test_a_decisions_table_without_the_interface_columns_is_an_error():
    steps = two_steps()
    steps[0] = ("semdedup", steps[0][1].drop("reason"))
    with pytest.raises(DecisionError, match=r"semdedup decisions lack columns \['reason'\]"):
        compose(IDS, "v0", steps)


def test_two_decisions_for_one_sample_is_an_error():
    semdedup = decisions([("a", "keep", "rep"), ("a", "drop", "dup"), ("b", "keep", "rep")])
    with pytest.raises(DecisionError):
        compose(["a", "b"], "v0", [("semdedup", semdedup)])


def test_baseline_keeps_everything_with_only_curated_rows():
    ids = [f"s{i:03d}" for i in range(50)]
    ledger, copies = compose(ids, "baseline", [])
    assert copies == {sid: 1 for sid in ids}
    assert ledger.height == len(ids)
    assert set(ledger["step"]) == {FINAL_STEP}
    assert set(ledger["decision"]) == {"in"}
    assert set(ledger["reason"]) == {"in the curated dataset"}
    assert ledger["sample_id"].to_list() == ids
    assert set(ledger["recipe"]) == {"baseline"}


def test_empty_pool():
    ledger, copies = compose([], "baseline", [], 1.5, "w")
    assert ledger.height == 0 and copies == {}
    assert dict(ledger.schema) == LEDGER_SCHEMA


# --------------------------------------------------------------------------------------------
# domain weights
# --------------------------------------------------------------------------------------------

SYNTH = [hashlib.sha256(f"synthetic-{i}".encode()).hexdigest()[:16] for i in range(10_000)]


@pytest.mark.parametrize("weight", [0.0, 0.01, 0.3, 0.5, 0.999, 1.0, 1.5, 2.0, 2.7, 3.25, 100.0])
def test_weight_copies_is_floor_or_floor_plus_one(weight):
    got = [weight_copies(sid, weight) for sid in SYNTH[:2000]]
    whole = int(weight // 1)
    assert set(got) <= {whole, whole + 1}
    if weight == whole:
        assert set(got) == {whole}


@pytest.mark.parametrize("weight", [0.3, 1.5, 2.7])
def test_weight_copies_average_matches_the_weight(weight):
    copies = [weight_copies(sid, weight) for sid in SYNTH]
    assert abs(sum(copies) / len(copies) - weight) < 0.03


def test_weight_0_3_keeps_about_30_percent_and_weight_0_drops_all():
    kept = sum(1 for sid in SYNTH if weight_copies(sid, 0.3) > 0) / len(SYNTH)
    assert abs(kept - 0.3) < 0.03
    assert all(weight_copies(sid, 0.0) == 0 for sid in SYNTH)


def test_weight_copies_is_deterministic_and_monotonic():
    weights = [0.0, 0.2, 0.5, 1.0, 1.2, 1.5, 2.0]
    table = [[weight_copies(sid, w) for w in weights] for sid in SYNTH[:3000]]
    assert table == [[weight_copies(sid, w) for w in weights] for sid in SYNTH[:3000]]
    # the same samples get the extra copy whatever the recipe (one hash per sample id)
    for row in table:
        assert row == sorted(row)
        assert (row[2] == 1) == (row[5] == 2)          # kept at 0.5 ⇔ doubled at 1.5
        assert (row[1] == 1) == (row[4] == 2)          # kept at 0.2 ⇔ doubled at 1.2


def test_weight_copies_is_the_same_in_another_process():
    ids = SYNTH[:200]
    code = ("import json, sys; from mm_assets.curated.compose import weight_copies; "
            "print(json.dumps([weight_copies(s, 1.5) for s in json.loads(sys.stdin.read())]))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(ids), capture_output=True, text=True,
                         cwd=REPO_ROOT, env=env, check=True, timeout=600)
    assert json.loads(out.stdout) == [weight_copies(s, 1.5) for s in ids]


def _one_step(ids, dropped):
    return [("semdedup", decisions([(s, "drop" if s in dropped else "keep", "dup" if s in dropped else "rep")
                                    for s in ids]))]


def test_compose_with_an_upsampling_weight():
    ids = SYNTH[:1000]
    dropped = set(ids[::7])
    ledger, copies = compose(ids, "mix", _one_step(ids, dropped), 1.5, weights_hash="wh1")
    assert ledger.height == len(ids) * 3
    dw = ledger.filter(pl.col("step") == "domain_weights")
    assert dw.height == len(ids) and dw["sample_id"].to_list() == ids
    assert set(dw["decision"]) == {"keep", "upsample"}
    assert set(dw["params_hash"]) == {"wh1"} and set(dw["score"]) == {1.5}
    assert set(dw["recipe"]) == {"mix"}
    for r in dw.iter_rows(named=True):
        n = weight_copies(r["sample_id"], 1.5)
        assert r["decision"] == ("upsample" if n == 2 else "keep")
        assert r["reason"] == f"domain weight 1.5: {n} cop{'y' if n == 1 else 'ies'}"
    for sid in ids:
        assert copies[sid] == (0 if sid in dropped else weight_copies(sid, 1.5))
        fin = ledger_row(ledger, sid, FINAL_STEP)
        if sid in dropped:
            assert (fin["decision"], fin["reason"]) == ("out", "dropped by semdedup: dup")
        elif copies[sid] == 2:
            assert (fin["decision"], fin["reason"]) == ("in", "in the curated dataset (2 copies)")
        else:
            assert (fin["decision"], fin["reason"]) == ("in", "in the curated dataset")
    assert ledger.unique("step", maintain_order=True)["step"].to_list() == ["semdedup", "domain_weights", FINAL_STEP]
    kept = [s for s in ids if s not in dropped]
    assert abs(sum(copies.values()) / len(kept) - 1.5) < 0.1


def test_compose_with_a_downsampling_weight():
    ids = SYNTH[:1000]
    dropped = set(ids[::5])
    ledger, copies = compose(ids, "mix", _one_step(ids, dropped), 0.3, weights_hash="wh2")
    dw = ledger.filter(pl.col("step") == "domain_weights")
    assert set(dw["decision"]) == {"keep", "drop"}
    for sid in ids:
        n = weight_copies(sid, 0.3)
        assert ledger_row(ledger, sid, "domain_weights")["decision"] == ("keep" if n else "drop")
        fin = ledger_row(ledger, sid, FINAL_STEP)
        if sid in dropped:   # the step came first: its reason wins even when the weight also drops it
            assert fin["reason"] == "dropped by semdedup: dup" and copies[sid] == 0
        elif n == 0:
            assert fin["reason"] == "dropped by domain_weights: weight 0.3" and copies[sid] == 0
        else:
            assert fin["decision"] == "in" and copies[sid] == 1
    assert any(s in dropped and weight_copies(s, 0.3) == 0 for s in ids)


def test_compose_with_weight_zero_drops_everything():
    ids = SYNTH[:100]
    ledger, copies = compose(ids, "none", [], 0.0, weights_hash="w0")
    assert set(copies.values()) == {0}
    assert set(ledger.filter(pl.col("step") == "domain_weights")["decision"]) == {"drop"}
    fin = ledger.filter(pl.col("step") == FINAL_STEP)
    assert set(fin["decision"]) == {"out"} and set(fin["reason"]) == {"dropped by domain_weights: weight 0"}


def test_weight_one_adds_no_rows_and_compose_is_deterministic():
    ids = SYNTH[:300]
    ledger, _ = compose(ids, "r", _one_step(ids, set(ids[::3])), 1.0, weights_hash="w")
    assert "domain_weights" not in set(ledger["step"])
    a = compose(ids, "r", _one_step(ids, set(ids[::3])), 2.7, weights_hash="w")
    b = compose(ids, "r", _one_step(ids, set(ids[::3])), 2.7, weights_hash="w")
    assert a[0].equals(b[0]) and a[1] == b[1]


# --------------------------------------------------------------------------------------------
# write_curated_shards
# --------------------------------------------------------------------------------------------

RAW_IDS = [hashlib.sha256(f"raw-{i}".encode()).hexdigest()[:16] for i in range(7)]
RAW_SHARDS = [RAW_IDS[:4], RAW_IDS[4:]]


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4 + i, 3), (i * 30 % 256, 80, 200)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def raw(tmp_path):
    st = Storage(str(tmp_path / "raw"))
    fields, shards = {}, []
    for n, ids in enumerate(RAW_SHARDS):
        samples = []
        for sid in ids:
            i = RAW_IDS.index(sid)
            record = {"sample_id": sid, "domain": "chart", "source": "synthetic",
                      "conversations": [{"from": "human", "value": f"<image>\nQuestion {i}?"},
                                        {"from": "gpt", "value": f"Answer {i}."}]}
            fields[sid] = {"json": json.dumps(record).encode(), "png": _png(i)}
            samples.append((sid, fields[sid]))
        buf = io.BytesIO()
        write_shard(buf, samples)
        name = f"shard-{n:06d}.tar"
        sha = st.write_bytes(name, buf.getvalue())
        shards.append({"tar": name, "sha256": sha, "samples": len(ids)})
    return st, {"shards": shards}, fields


# 7 raw samples over 2 shards: two dropped, one tripled, one absent from `copies` (= dropped)
COPIES = {RAW_IDS[0]: 1, RAW_IDS[1]: 0, RAW_IDS[2]: 3, RAW_IDS[3]: 1, RAW_IDS[4]: 0, RAW_IDS[5]: 1}
EXPECTED_KEYS = [RAW_IDS[0], RAW_IDS[2], f"{RAW_IDS[2]}_r1", f"{RAW_IDS[2]}_r2", RAW_IDS[3], RAW_IDS[5]]


def _source_id(key: str) -> str:
    return key.split("_r", 1)[0]


def test_curated_shards_keys_order_and_bytes(raw, tmp_path):
    st, manifest, fields = raw
    out = Storage(str(tmp_path / "out"))
    shards = write_curated_shards(st, manifest, COPIES, out, samples_per_shard=2)
    assert [s["tar"] for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert [s["samples"] for s in shards] == [2, 2, 2]
    assert out.list() == [s["tar"] for s in shards]
    paths = [tmp_path / "out" / s["tar"] for s in shards]
    for s, p in zip(shards, paths):
        data = p.read_bytes()
        assert s["sha256"] == hashlib.sha256(data).hexdigest()
        assert s["bytes"] == len(data)

    # standard library tarfile: member names, order and bytes
    keys = []
    for s, p in zip(shards, paths):
        with tarfile.open(p) as tar:
            members = tar.getmembers()
            assert all(m.isfile() and m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
            names = [m.name for m in members]
            shard_keys = list(dict.fromkeys(n.split(".", 1)[0] for n in names))
            assert names == [f"{k}.{e}" for k in shard_keys for e in ("json", "png")]
            for m in members:
                key, ext = m.name.split(".", 1)
                assert tar.extractfile(m).read() == fields[_source_id(key)][ext]
            assert len(shard_keys) == s["samples"]
            keys += shard_keys
    assert keys == EXPECTED_KEYS

    # the project's strict reader agrees
    read = []
    for p in paths:
        with open(p, "rb") as f:
            read += list(read_shard(f))
    assert [k for k, _ in read] == EXPECTED_KEYS
    assert all(fs == fields[_source_id(k)] for k, fs in read)
    # copies keep the original record (its sample_id) byte for byte
    assert json.loads(dict(read)[f"{RAW_IDS[2]}_r2"]["json"])["sample_id"] == RAW_IDS[2]


def test_curated_shards_read_with_webdataset(raw, tmp_path):
    wds = pytest.importorskip("webdataset")
    st, manifest, fields = raw
    out = Storage(str(tmp_path / "out"))
    shards = write_curated_shards(st, manifest, COPIES, out, samples_per_shard=2)
    urls = [str(tmp_path / "out" / s["tar"]) for s in shards]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in samples] == EXPECTED_KEYS
    for s in samples:
        assert {k for k in s if not k.startswith("__")} == {"json", "png"}
        src = fields[_source_id(s["__key__"])]
        assert s["json"] == src["json"] and s["png"] == src["png"]
    # decoded, the image is still the raw image
    img = Image.open(io.BytesIO(samples[0]["png"]))
    assert img.size == (4 + RAW_IDS.index(EXPECTED_KEYS[0]), 3)


def test_curated_shards_are_byte_reproducible(raw, tmp_path):
    st, manifest, _ = raw
    a = write_curated_shards(st, manifest, COPIES, Storage(str(tmp_path / "out_a")), samples_per_shard=2)
    b = write_curated_shards(st, manifest, COPIES, Storage(str(tmp_path / "out_a")), samples_per_shard=2)
    c = write_curated_shards(st, manifest, COPIES, Storage(str(tmp_path / "out_b")), samples_per_shard=2)
    assert a == b == c
    for s in a:
        assert (tmp_path / "out_a" / s["tar"]).read_bytes() == (tmp_path / "out_b" / s["tar"]).read_bytes()


def test_curated_shards_partial_last_shard_and_everything_kept(raw, tmp_path):
    st, manifest, fields = raw
    shards = write_curated_shards(st, manifest, {sid: 1 for sid in RAW_IDS}, Storage(str(tmp_path / "all")), 3)
    assert [s["samples"] for s in shards] == [3, 3, 1]
    keys = []
    for s in shards:
        with open(tmp_path / "all" / s["tar"], "rb") as f:
            keys += [k for k, _ in read_shard(f)]
    assert keys == RAW_IDS
    # a raw-identical selection still re-packs into the curated shard size: same per-sample bytes
    assert sum(s["samples"] for s in shards) == len(fields)


def test_curated_shards_nothing_kept(raw, tmp_path):
    st, manifest, _ = raw
    out = Storage(str(tmp_path / "none"))
    assert write_curated_shards(st, manifest, {}, out, 2) == []
    assert out.list() == []
