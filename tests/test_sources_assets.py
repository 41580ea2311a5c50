"""The sources assets in-process on a real (SQLite) instance: data versions, reuse, metadata."""

import hashlib
import time

import dagster as dg
import polars as pl
import pytest

from mm_assets.sources.assets import eval_sets, quarantine, raw_shards, samples, source
from mm_assets.storage import Storage, canonical_json
from mm_assets.taxonomy import BENCHMARKS
from resources.json_io_manager import JsonPointerIOManager
from resources.settings import sample_data_source
from resources.storage import StorageResource

ASSETS = [source, raw_shards, samples, quarantine, eval_sets]


@pytest.fixture(scope="module")
def env(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    storage = StorageResource(root=str(root))
    resources = {"storage": storage, "mammoth": sample_data_source(sample_data),
                 "io_manager": JsonPointerIOManager(storage=storage)}
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster_home"))) as instance:
        yield instance, resources, Storage(str(root))


def materialize(env, selection, partition=None):
    instance, resources, _ = env
    result = dg.materialize(ASSETS, selection=selection, partition_key=partition, resources=resources,
                            instance=instance)
    assert result.success
    return result


def last(instance, key, partition=None):
    f = dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None)
    rec = instance.fetch_materializations(f, limit=1).records[0]
    mat = rec.asset_materialization
    return mat, {k: v.value for k, v in mat.metadata.items()}


def test_source_then_domains_then_quarantine(env, truth):
    instance, _, st = env
    materialize(env, ["source"])
    mat, meta = last(instance, "source")
    # every array element either passed the record checks or is quarantined with a reason
    assert sum(meta["records_per_domain"].values()) + meta["quarantined"] == \
        truth["main"]["records"] + len(truth["dirty"]["records"])
    assert meta["truncated_tarballs"] == ["shard_0001.tar.gz"]

    for domain in ("chart", "language"):
        materialize(env, ["raw_shards", "samples"], domain)
        rmat, rmeta = last(instance, "raw_shards", domain)
        pointer = st.read_json(f"dagster_io/raw_shards/{domain}.json")
        manifest = st.child(pointer["root"]).read_json("manifest.json")
        expected = hashlib.sha256(canonical_json([[s["sha256"], s["quarantine_sha256"]] for s in manifest["shards"]])).hexdigest()[:20]
        assert rmat.tags["dagster/data_version"] == expected == pointer["version"]
        smat, smeta = last(instance, "samples", domain)
        sp = st.read_json(f"dagster_io/samples/{domain}.json")
        assert smat.tags["dagster/data_version"] == hashlib.sha256(st.read_bytes(sp["root"])).hexdigest()[:20]
        assert smeta["rows"] == rmeta["samples"] == st.read_parquet(sp["root"]).height

    materialize(env, ["quarantine"])
    _, qmeta = last(instance, "quarantine")
    assert qmeta["domains_covered"] == ["chart", "language"]
    assert sum(qmeta["by_reason"].values()) == qmeta["rows"] > 0


def test_unchanged_inputs_reuse_artifacts_with_the_same_version(env):
    instance, _, _ = env
    before, _ = last(instance, "raw_shards", "language")
    started = time.perf_counter()
    materialize(env, ["source", "raw_shards"], "language")
    after, meta = last(instance, "raw_shards", "language")
    assert meta["reused"] is True
    assert after.tags["dagster/data_version"] == before.tags["dagster/data_version"]
    assert time.perf_counter() - started < 30  # run overhead only; the ingest itself is skipped


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_eval_sets_uniform_schema(env, sample_data, benchmark):
    instance, _, st = env
    materialize(env, ["eval_sets"], benchmark)
    _, meta = last(instance, "eval_sets", benchmark)
    native = pl.read_parquet(sample_data / "eval" / f"{benchmark}.parquet")
    assert meta["items"] == native.height and meta["quarantined"] == 0
    items = st.read_parquet(st.read_json(f"dagster_io/eval_sets/{benchmark}.json")["root"])
    assert items["item_id"].n_unique() == items.height
    assert items["answers"].list.len().min() >= 1
    if benchmark == "pixmo_points":
        for row in items.iter_rows(named=True):
            assert len(row["masks_png"]) == max(1, len(row["points_px"]))
            for x, y in row["points_px"]:
                assert 0 <= x <= row["width"] and 0 <= y <= row["height"]
    if benchmark == "realworldqa":
        mc = items.filter(pl.col("answer_type") == "choice")
        assert mc.height > 0
        assert all(len(c) >= 2 for c in mc["choices"].to_list())
    if benchmark == "countbench":
        assert (items["answers"].list.first() == items["number"].cast(pl.String)).all()
