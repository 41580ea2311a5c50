"""`mm-curation demo`: generate the look-alike data and materialize the graph into a
persistent Dagster instance, so `make ui` shows every materialization."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from resources.settings import REPO_ROOT

DEMO_TARGET_REMOVAL = 0.10


def prepare_home(home: Path) -> Path:
    """Point MM_HOME and DAGSTER_HOME at the demo's directories; install dagster.yaml."""
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    os.environ["MM_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def ensure_sample_data(root: Path, scale: str, seed: int) -> None:
    truth = root / "truth" / "planted_truth.json"
    if truth.exists():
        t = json.loads(truth.read_text())
        if t.get("scale") == scale and t.get("seed") == seed:
            print(f"sample data: reusing {root} (scale={scale}, seed={seed})")
            return
        shutil.rmtree(root)
    from mm_assets.sample_data import generate_sample_data
    started = time.perf_counter()
    summary = generate_sample_data(root, scale=scale, seed=seed)
    print(f"sample data: generated {root} in {time.perf_counter() - started:.1f}s "
          f"({summary.get('records', '?')} records)")


def run_demo(home: Path, scale: str = "demo", seed: int = 0) -> dict:
    home = home.resolve()
    prepare_home(home)
    from resources.settings import sample_data_dir
    ensure_sample_data(sample_data_dir(), scale, seed)

    import dagster as dg

    from mm_assets.definitions import defs
    from mm_assets.partitions import SPACES
    from mm_assets.taxonomy import BENCHMARKS, DOMAINS

    instance = dg.DagsterInstance.get()
    timings = {}

    def run(job_name: str, partition_key: str | None = None, run_config: dict | None = None) -> None:
        started = time.perf_counter()
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, partition_key=partition_key, run_config=run_config, raise_on_error=True)
        assert result.success
        timings[f"{job_name}[{partition_key}]" if partition_key else job_name] = time.perf_counter() - started

    run("source_job")
    for domain in DOMAINS:
        run("ingest_domain_job", domain)
    run("quarantine_job")
    for benchmark in BENCHMARKS:
        run("eval_sets_job", benchmark)
    run("embedder_job")
    for domain in DOMAINS:
        run("embeddings_job", domain)
    for space in SPACES:
        run("semdedup_scores_job", space)
        run("semdedup_mask_job", space,
            {"ops": {"semdedup_mask": {"config": {"target_removal": DEMO_TARGET_REMOVAL}}}})
    summary = _summarise(instance)
    summary["seconds"] = timings
    return summary


def _summarise(instance) -> dict:
    import dagster as dg

    def latest(key: str, partition: str | None = None) -> dict:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None), limit=1).records
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}

    from mm_assets.partitions import SPACES
    from mm_assets.taxonomy import BENCHMARKS, DOMAINS

    def dedup(space: str) -> dict:
        m = latest("semdedup_mask", space)
        keys = ("n", "target_removal", "achieved_removal", "removed", "eps", "exact",
                "precision_vs_planted", "recall_vs_planted", "at_planted_rate")
        return {k: m[k] for k in keys if k in m}

    return {
        "samples_per_domain": {d: latest("samples", d)["rows"] for d in DOMAINS},
        "quarantine_by_reason": latest("quarantine")["by_reason"],
        "eval_items": {b: latest("eval_sets", b)["items"] for b in BENCHMARKS},
        "semdedup": {space: dedup(space) for space in SPACES},
    }
