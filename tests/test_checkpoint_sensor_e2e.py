"""A real `dagster dev` daemon: ten complete checkpoints dropped into the store at once are all
registered by the checkpoint sensor and evaluated, and never more than the eval pool's limit
(2, from the shipped dagster.yaml) are loaded at the same time. A soup of two of them (the last
two share a tower, as experts of one start do), written into the store while the daemon runs,
is registered and evaluated the same way, its weights merged for its evaluation.

To keep the suite's time in bounds every checkpoint is evaluated on one benchmark
(`MM_EVAL_ON_REGISTER`) with 4 items; that requests all ten evals at once, which is what the
pool has to hold back. Requesting every benchmark is covered by test_checkpoint_sensor.py.
"""

import os
import shutil
import time

import dagster as dg
import pytest
import yaml

from mm_assets.definitions import build_definitions
from mm_assets.local_runner import LocalGraph
from mm_assets.partitions import checkpoint_benchmark_partitions
from mm_assets.mixing.soups import write_soup
from mm_assets.storage import Storage
from mm_assets.vlm.random_checkpoint import write_random_checkpoint, write_sibling_checkpoint
from resources.settings import REPO_ROOT
from servers import dagster_dev
from intervals import max_overlap

pytestmark = pytest.mark.e2e
N = 10
BENCHMARK = "countbench"


def _drop_ready_checkpoints(staging):
    """Ten distinct checkpoints (their own seeds): identical weights would be evaluated once and
    reused (eval results are content-addressed), and the pool would have nothing to hold back.
    The last is a sibling of the one before (same tower, the rest moved), so the two can be souped."""
    for i in range(N - 1):
        write_random_checkpoint(staging / f"ck-{i:02d}", ["How many dots?", "What is shown?", "Three."] * 30,
                                seed=i, training_run="e2e", step=i * 10)
    write_sibling_checkpoint(staging / f"ck-{N - 2:02d}", staging / f"ck-{N - 1:02d}", seed=N - 1,
                             training_run="e2e", step=(N - 1) * 10)


@pytest.mark.timeout(2400)     # the suite runs it beside four other processes
def test_ten_checkpoints_at_once_never_exceed_the_eval_pool(sample_data, tmp_path):
    pool_limit = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["concurrency"]["pools"]["default_limit"]
    home = tmp_path / "home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    (home / "recipes").mkdir()
    env = {"MM_HOME": str(home), "MM_SAMPLE_DATA": str(sample_data), "DAGSTER_HOME": str(dagster_home),
           "MM_RECIPES": str(home / "recipes"), "MM_EVAL_ON_REGISTER": BENCHMARK, "MM_EVAL_MAX_ITEMS": "4",
           "MM_EVAL_BATCH_SIZE": "4", "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        instance = dg.DagsterInstance.get()
        graph = LocalGraph(build_definitions(), instance)
        graph.run("source_job")
        graph.run("eval_sets_job", BENCHMARK)
        staging = home / "staging"
        _drop_ready_checkpoints(staging)
        store = home / "checkpoints"
        store.mkdir()
        with dagster_dev(REPO_ROOT / "workspace.yaml", dagster_home, cwd=REPO_ROOT, extra_env=env) as dev:
            for d in sorted(staging.iterdir()):          # dropped at once: ten renames
                os.rename(d, store / d.name)
            soup = write_soup(Storage(str(store)), [f"ck-{N - 2:02d}", f"ck-{N - 1:02d}"], label="last-two")
            expected = {f"ck-{i:02d}" for i in range(N)} | {soup}

            def evaluated():
                recs = instance.fetch_materializations(dg.AssetKey("eval_scores"), limit=1000).records
                return {checkpoint_benchmark_partitions.get_partition_key_from_str(r.partition_key)
                        .keys_by_dimension["checkpoint"] for r in recs}

            # a stall bound, not a speed bound: fails when no eval finished for 10 minutes (on a
            # busy 2-core machine the ten took from 4 to over 15 minutes)
            done, progressed = evaluated(), time.time()
            while done != expected and time.time() < progressed + 600:
                time.sleep(5)
                now = evaluated()
                if now != done:
                    done, progressed = now, time.time()
            assert evaluated() == expected, (sorted(expected - evaluated()), dev.log_tail())
            # the last eval's materialization comes before its run's end: stopping `dagster dev`
            # in between interrupts that run (it was then marked FAILURE, once, under a profiler)
            deadline = time.time() + 300
            while time.time() < deadline and not all(
                    r.is_finished for r in instance.get_runs(dg.RunsFilter(job_name="eval_job"))):
                time.sleep(2)
        records = instance.fetch_materializations(dg.AssetKey("eval_scores"), limit=1000).records
        intervals = [(r.asset_materialization.metadata["loaded_at"].value,
                      r.asset_materialization.metadata["released_at"].value) for r in records]
        assert len(intervals) == N + 1
        assert max_overlap(intervals) <= pool_limit
        runs = instance.get_runs(dg.RunsFilter(job_name="eval_job"))
        assert len(runs) == N + 1                             # one request per checkpoint, not more
        soup_eval = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("eval_scores"), asset_partitions=[f"{BENCHMARK}|{soup}"]), limit=1).records
        assert soup_eval[0].asset_materialization.metadata["generated_items"].value == 4    # merged, evaluated
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        # the pool was the limit, not a lack of demand: more evals were requested than there are
        # slots before the first one finished (they waited in the queue, not in the sensor)
        records = instance.get_run_records(dg.RunsFilter(job_name="eval_job"))
        first_end = min(r.end_time for r in records)
        assert sum(r.create_timestamp.timestamp() < first_end for r in records) > pool_limit
        registrations = instance.get_runs(dg.RunsFilter(job_name="checkpoint_job"))
        assert sorted(r.tags["dagster/partition"] for r in registrations) == sorted(expected)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
