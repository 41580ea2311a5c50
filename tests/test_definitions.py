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
