"""The code location loads, as `dagster dev` and CI would load it."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parent.parent


def test_dagster_definitions_validate():
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(dagster), "definitions", "validate", "-m", "mm_assets.definitions"],
                         cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_graph_shape():
    from mm_assets.definitions import defs
    from mm_assets.taxonomy import BENCHMARKS, DOMAINS

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"source", "raw_shards", "samples", "quarantine", "eval_sets"} <= keys
    assert graph.get(dg.AssetKey("raw_shards")).partitions_def.get_partition_keys() == list(DOMAINS)
    assert graph.get(dg.AssetKey("eval_sets")).partitions_def.get_partition_keys() == list(BENCHMARKS)
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("samples")).parent_keys} == {"raw_shards"}
    for job in ("source_job", "ingest_domain_job", "quarantine_job", "eval_sets_job"):
        defs.resolve_job_def(job)


def test_curation_and_evaluation_wiring():
    from mm_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    parents = {k: {p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(k)).parent_keys}
               for k in ("semdedup_scores", "semdedup_mask", "curated_dataset", "eval_scores", "perplexity_scores",
                         "perplexity_decisions", "eval_neighbours", "mining_decisions", "training_run")}
    assert parents["semdedup_scores"] == {"embeddings", "recipe/semdedup_clustering"}
    assert parents["semdedup_mask"] == {"semdedup_scores", "samples", "recipe/semdedup_threshold",
                                        "recipe/semdedup_clustering"}
    assert parents["curated_dataset"] == {"raw_shards", "samples", "semdedup_mask", "perplexity_decisions",
                                          "relevance_decisions", "rephrase_decisions", "mining_decisions",
                                          "decontamination_decisions", "recipe/plan"}
    # expensive scores read only the section that changes them; decisions read their own
    assert parents["perplexity_scores"] == {"raw_shards", "reference_model", "recipe/perplexity_scoring"}
    assert parents["perplexity_decisions"] == {"perplexity_scores", "samples", "recipe/perplexity_selection"}
    assert parents["eval_neighbours"] == {"eval_embeddings", "embeddings", "question_embeddings",
                                          "recipe/mining_neighbours"}
    assert parents["mining_decisions"] == {"eval_neighbours", "samples", "recipe/mining"}
    assert parents["training_run"] == {"curated_dataset", "embedder"}
    assert parents["eval_scores"] == {"checkpoint", "eval_sets"}
    # the eval step declares the pool whose limit dagster.yaml sets (default 2)
    assert graph.get(dg.AssetKey("eval_scores")).pools == {"eval_checkpoint_load"}
    for name in ("recipe_sensor", "curation_automation"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING
