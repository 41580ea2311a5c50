"""SemDeDup through the asset graph on the demo data: target fractions hit exactly and a target
change only re-thresholds stored scores.

The embedder here is a tiny SigLIP2 checkpoint given by path (the production path: no
training), so these tests check the mechanism, not embedding quality."""

import time

import dagster as dg
import polars as pl
import pytest

from mm_assets.dedup.assets import semdedup_mask, semdedup_scores
from mm_assets.embeddings.assets import embedder, embeddings
from mm_assets.sources.assets import raw_shards, samples, source
from mm_assets.storage import Storage
from mm_assets.taxonomy import DOMAINS
from resources.json_io_manager import JsonPointerIOManager
from resources.models import EmbedderResource
from resources.settings import sample_data_source
from resources.storage import StorageResource

ASSETS = [source, raw_shards, samples, embedder, embeddings, semdedup_scores, semdedup_mask]


@pytest.fixture(scope="module")
def pipeline(sample_data, tmp_path_factory):
    from mm_assets.embeddings.model import build_tiny_siglip2, save_embedder

    checkpoint = tmp_path_factory.mktemp("siglip2")
    save_embedder(*build_tiny_siglip2(seed=0), checkpoint)
    root = tmp_path_factory.mktemp("artifacts")
    storage = StorageResource(root=str(root))
    resources = {"storage": storage, "mammoth": sample_data_source(sample_data),
                 "embedder_model": EmbedderResource(model=str(checkpoint)),
                 "io_manager": JsonPointerIOManager(storage=storage)}
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster_home"))) as instance:
        def run(selection, partition=None, run_config=None):
            result = dg.materialize(ASSETS, selection=selection, partition_key=partition, resources=resources,
                                    instance=instance, run_config=run_config)
            assert result.success
            return result
        run(["source"])
        for d in DOMAINS:
            run(["raw_shards", "samples"], d)
        run(["embedder"])
        for d in DOMAINS:
            run(["embeddings"], d)
        for space in ("image", "text"):
            run(["semdedup_scores"], space)
        yield instance, run, Storage(str(root))


def meta(instance, key, partition):
    rec = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1).records[0]
    return {k: v.value for k, v in rec.asset_materialization.metadata.items()}


def count(instance, key, partition):
    return len(instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=100).records)


def mask_config(target=None, eps=None):
    return {"ops": {"semdedup_mask": {"config": {"target_removal": target, "eps": eps}}}}


@pytest.mark.parametrize("space", ["image", "text"])
@pytest.mark.parametrize("target", [0.05, 0.10, 0.30])
def test_target_fraction_is_hit(pipeline, space, target):
    instance, run, _ = pipeline
    run(["semdedup_mask"], space, mask_config(target))
    m = meta(instance, "semdedup_mask", space)
    if m["exact"]:  # the nearest whole count: within 0.1 pp, or half a sample when n is small
        assert m["removed"] == m["target_count"] == round(target * m["n"]), m
        assert abs(m["achieved_removal"] - target) <= max(0.001, 0.5 / m["n"]), m
    else:  # tied scores: the nearest reachable count, reported as such
        assert abs(m["achieved_removal"] - target) <= 0.05, m


def test_changing_the_target_only_rethresholds_stored_scores(pipeline):
    instance, run, st = pipeline
    scores_before = count(instance, "semdedup_scores", "image")
    embeddings_before = {d: count(instance, "embeddings", d) for d in DOMAINS}
    started = time.perf_counter()
    run(["semdedup_mask"], "image", mask_config(0.07))
    wall = time.perf_counter() - started
    m = meta(instance, "semdedup_mask", "image")
    assert m["seconds"] < 2.0 and m["kmeans_or_pairwise_work"] is False
    assert count(instance, "semdedup_scores", "image") == scores_before
    assert {d: count(instance, "embeddings", d) for d in DOMAINS} == embeddings_before
    assert wall < 30
    # the mask is a pure function of stored scores and the threshold
    mask = st.read_parquet(st.read_json("dagster_io/semdedup_mask/image.json")["root"] + "/mask.parquet")
    assert (~mask["kept"]).sum() == m["removed"]
    assert mask.filter(~pl.col("kept"))["duplicate_of"].null_count() == 0


def test_eps_instead_of_target_and_the_semantic_pruning_warning(pipeline):
    instance, run, _ = pipeline
    run(["semdedup_mask"], "image", mask_config(eps=0.3))
    m = meta(instance, "semdedup_mask", "image")
    assert m["eps"] == 0.3 and m["semantic_pruning_warning"] is True
    with pytest.raises(Exception):
        run(["semdedup_mask"], "image", mask_config(target=0.1, eps=0.1))
