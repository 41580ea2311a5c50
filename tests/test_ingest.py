"""Ingest of the look-alike data with the plain functions (no Dagster)."""

import hashlib
import json
import shutil
import tarfile

import polars as pl
import pytest
import webdataset as wds

from mm_assets.sources.ingest import IngestInterrupted, ingest_domain
from mm_assets.sources.samples_table import build_samples_table
from mm_assets.sources.source_scan import SourceSpec, scan_sources, source_identity
from mm_assets.storage import Storage, canonical_json
from mm_assets.taxonomy import DOMAINS


def specs(root, which=("main", "dirty")):
    return [SourceSpec(n, str(root / n / "mammoth_si.json"), str(root / n / "images")) for n in which]


@pytest.fixture(scope="module")
def dirty_ingest(sample_data, tmp_path_factory):
    """The dirty source alone, through the source scan and every domain's shards."""
    out = Storage(str(tmp_path_factory.mktemp("dirty_ingest")))
    manifest = scan_sources(specs(sample_data, ["dirty"]), str(sample_data / "source_to_domain.json"),
                            out.child("source"))
    domains = {d: ingest_domain(out.child("source"), manifest, d, out.child(f"raw/{d}"), samples_per_shard=7)
               for d in DOMAINS}
    quarantine = pl.concat(
        [out.child("source").read_parquet("quarantine.parquet")]
        + [out.child(f"raw/{d}").read_parquet(s["quarantine"]) for d, m in domains.items() for s in m["shards"]])
    ingested = pl.concat([build_samples_table(out.child(f"raw/{d}"), m) for d, m in domains.items()])
    return quarantine, ingested


def test_quarantine_details_name_no_object_address(dirty_ingest):
    """PIL names the BytesIO it could not read by its memory address, another in every process:
    written as it is, two ingests of the same input wrote different quarantine tables, and
    raw_shards got another data version every run."""
    quarantine, _ = dirty_ingest
    corrupt = quarantine.filter(pl.col("reason") == "corrupt_image")["detail"].to_list()
    assert any("<_io.BytesIO object>" in d for d in corrupt), corrupt
    assert not [d for d in quarantine["detail"].to_list() if " at 0x" in d]


def test_dirty_source_every_malformed_record_quarantined_with_its_reason(dirty_ingest, truth):
    quarantine, ingested = dirty_ingest
    expected = {r["ordinal"]: r["expected"] for r in truth["dirty"]["records"]}
    got = dict(zip(quarantine["ordinal"].to_list(), quarantine["reason"].to_list()))
    bad = {o: e for o, e in expected.items() if e != "ok"}
    assert got == bad, {o: (e, got.get(o)) for o, e in expected.items() if got.get(o) != (None if e == "ok" else e)}
    assert quarantine["detail"].str.len_chars().min() > 0
    # no good record lost: every "ok" record is a sample
    good = {o for o, e in expected.items() if e == "ok"}
    assert set(ingested["ordinal"].to_list()) == good
    assert ingested.height == truth["dirty"]["good"]
    assert len(bad) == truth["dirty"]["malformed"]


def test_dirty_source_repairable_records_are_repaired_and_the_repair_recorded(dirty_ingest, truth):
    _, ingested = dirty_ingest
    expected = {r["ordinal"]: r["fixes"] for r in truth["dirty"]["records"] if r["expected"] == "ok"}
    got = dict(zip(ingested["ordinal"].to_list(), ingested["fixes"].to_list()))
    assert got == expected
    assert {fix for fixes in expected.values() for fix in fixes} == {
        "inserted_image_token", "collapsed_image_tokens", "unwrapped_image_list"}


def test_interrupted_ingest_resumes_to_identical_output(sample_data, tmp_path):
    src = Storage(str(tmp_path / "src"))
    manifest = scan_sources(specs(sample_data, ["main"]), str(sample_data / "source_to_domain.json"), src)
    domain, per_shard = "chart", 40

    reference = Storage(str(tmp_path / "reference"))
    ref_manifest = ingest_domain(src, manifest, domain, reference, samples_per_shard=per_shard)
    assert len(ref_manifest["shards"]) >= 3

    resumed = Storage(str(tmp_path / "resumed"))

    def fail_mid_shard(shard_index, position):
        if shard_index == 1 and position == per_shard // 2:
            raise IngestInterrupted("injected failure")

    with pytest.raises(IngestInterrupted):
        ingest_domain(src, manifest, domain, resumed, samples_per_shard=per_shard, on_sample=fail_mid_shard)
    # Nothing partial is visible: exactly shard 0 is complete, no temporaries, no manifest.
    visible = resumed.walk_files()
    assert "manifest.json" not in visible
    assert [f for f in visible if f.endswith(".tar")] == ["shard-000000.tar"]
    assert not [p for p in (tmp_path / "resumed").rglob("*") if p.name.startswith(".tmp-")]
    for name in visible:
        if name.endswith(".tar"):
            with resumed.open_read(name) as f, tarfile.open(fileobj=f) as t:
                assert len(t.getmembers()) > 0

    redone = []
    second = ingest_domain(src, manifest, domain, resumed, samples_per_shard=per_shard,
                           on_sample=lambda i, j: redone.append(i))
    assert second["resumed_shards"] == 1 and 0 not in redone
    assert [s["sha256"] for s in second["shards"]] == [s["sha256"] for s in ref_manifest["shards"]]
    for name in reference.walk_files():
        if name != "manifest.json":
            assert resumed.read_bytes(name) == reference.read_bytes(name), name


def test_shards_round_trip_through_the_webdataset_library(sample_data, tmp_path):
    src = Storage(str(tmp_path / "src"))
    manifest = scan_sources(specs(sample_data, ["main"]), str(sample_data / "source_to_domain.json"), src)
    for domain in ("ocr", "language"):
        out = Storage(str(tmp_path / domain))
        m = ingest_domain(src, manifest, domain, out, samples_per_shard=100)
        table = build_samples_table(out, m)
        urls = [out.uri(s["tar"]) for s in m["shards"]]
        seen = 0
        for sample in wds.WebDataset(urls, shardshuffle=False).decode():
            meta = sample["json"]
            row = table.row(by_predicate=pl.col("sample_id") == sample["__key__"], named=True)
            assert meta["sample_id"] == sample["__key__"] == row["sample_id"]
            assert json.dumps(meta["conversations"], ensure_ascii=False) == row["conversations"]
            assert meta["source"] == row["source"] and meta["original_id"] == row["original_id"]
            if domain == "language":
                assert meta["image"] is None and not ({"jpg", "png"} & set(sample))
            else:
                img = sample[meta["image"]["ext"]]  # decoded to a PIL-compatible array by wds
                assert img is not None
            seen += 1
        assert seen == table.height == m["samples"] > 0
        # raw bytes intact: image hash in the metadata matches the stored member
        for s in m["shards"]:
            for sample in wds.WebDataset([out.uri(s["tar"])], shardshuffle=False):
                meta = json.loads(sample["json"])
                if meta["image"]:
                    import hashlib
                    assert hashlib.sha256(sample[meta["image"]["ext"]]).hexdigest() == meta["image"]["sha256"]


def test_the_same_files_at_another_path_give_the_same_artifacts(sample_data, tmp_path):
    """Where the data set is mounted is lineage, not identity: a moved (or copied) data set must
    not re-ingest, and so re-embed and retrain, everything downstream. The dirty source, whose
    records and images are quarantined at both stages, copied to a second path: the source
    identity, every domain's record pointers, the quarantine tables, the shards and the samples
    tables are byte for byte the same, and only the manifest's `uri`s say where each came from."""
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(sample_data / "dirty", moved / "dirty")
    shutil.copyfile(sample_data / "source_to_domain.json", moved / "source_to_domain.json")
    runs = {}
    for name, root in (("original", sample_data), ("moved", moved)):
        out = Storage(str(tmp_path / name))
        manifest = scan_sources(specs(root, ["dirty"]), str(root / "source_to_domain.json"), out.child("source"))
        raw = {d: ingest_domain(out.child("source"), manifest, d, out.child(f"raw/{d}"), samples_per_shard=7)
               for d in ("chart", "general")}
        runs[name] = dict(
            manifest=manifest,
            identity=hashlib.sha256(canonical_json(source_identity(manifest))).hexdigest(),
            elements={d: v["sha256"] for d, v in manifest["domains"].items()},
            quarantine=manifest["quarantine"]["sha256"],
            shards={d: [(s["sha256"], s["quarantine_sha256"]) for s in m["shards"]] for d, m in raw.items()},
            image_quarantine=sum(m["quarantined"] for m in raw.values()),
            samples={d: build_samples_table(out.child(f"raw/{d}"), m).hash_rows().sum() for d, m in raw.items()})
    original, moved_run = runs["original"], runs["moved"]
    assert original["manifest"]["quarantine"]["rows"] > 0 and original["image_quarantine"] > 0
    for what in ("identity", "elements", "quarantine", "shards", "samples"):
        assert original[what] == moved_run[what], what
    assert moved_run["manifest"]["annotations"][0]["uri"] == str(moved / "dirty" / "mammoth_si.json")
    assert original["manifest"]["annotations"][0]["uri"] != moved_run["manifest"]["annotations"][0]["uri"]


def test_main_source_counts_and_fixes_match_the_planted_truth(sample_data, truth, tmp_path):
    src = Storage(str(tmp_path / "src"))
    manifest = scan_sources(specs(sample_data, ["main"]), str(sample_data / "source_to_domain.json"), src)
    assert manifest["quarantine"]["rows"] == 0
    assert {d: v["records"] for d, v in manifest["domains"].items()} == truth["main"]["per_domain"]
    out = Storage(str(tmp_path / "general"))
    m = ingest_domain(src, manifest, "general", out)
    table = build_samples_table(out, m)
    fixable = {r["ordinal"] for r in truth["image_token_fixable"] if r["domain"] == "general"}
    fixed = set(table.filter(pl.col("fixes").list.len() > 0)["ordinal"].to_list())
    assert fixed == fixable
    assert m["quarantined"] == 0 and table.height == truth["main"]["per_domain"]["general"]


@pytest.mark.s3
def test_ingest_with_artifacts_on_s3(sample_data, tmp_path):
    """The same ingest with artifact storage on an S3-compatible server on loopback — directly,
    and through a proxy that fails a quarter of the requests (503 SlowDown, 500, dropped
    connections): the storage layer retries with backoff and the result is identical."""
    from servers import faulty_proxy, moto_s3_server

    local = Storage(str(tmp_path / "local"))
    with moto_s3_server() as s3, faulty_proxy(s3.endpoint_url, fault_rate=0.25, seed=1) as proxy:
        s3.create_bucket("mm-artifacts")
        remote = Storage("s3://mm-artifacts/run", s3.storage_options("mm-artifacts"))
        flaky = Storage("s3://mm-artifacts/flaky", proxy.storage_options(s3))
        results = {}
        for name, st in (("local", local), ("s3", remote), ("s3 behind faults", flaky)):
            manifest = scan_sources(specs(sample_data, ["main", "dirty"]), str(sample_data / "source_to_domain.json"),
                                    st.child("source"))
            m = ingest_domain(st.child("source"), manifest, "chart", st.child("raw/chart"), samples_per_shard=100)
            results[name] = (manifest["domains"]["chart"]["sha256"], [s["sha256"] for s in m["shards"]],
                             build_samples_table(st.child("raw/chart"), m).height)
        assert results["s3"] == results["local"] == results["s3 behind faults"]
        assert remote.child("raw/chart").exists("manifest.json")
        assert sum(proxy.faults.values()) >= 10 and len(proxy.faults) == 3, (proxy.requests, proxy.faults)
        print(f"through the faulty proxy: {proxy.requests} requests, faults {proxy.faults}")
