"""Run the asset graph in-process against a persistent Dagster instance (demo, tests, bench).

`fill` materializes the graph the way a first backfill does (automation never requests assets
that were missing on its first tick). `automation_tick` evaluates the automation conditions
exactly as the automation sensor's tick does and materializes what they request, parents
before children — the daemon's behaviour without the daemon, for measurements and tests.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import dagster as dg

from mm_assets import progress
from mm_assets.partitions import recipe_partitions
from mm_assets.recipes.schema import RecipeError
from mm_assets.steps import STEPS
from mm_assets.taxonomy import BENCHMARKS, DOMAINS

AUTOMATION_TAGS = {"dagster/from_automation_condition": "true"}   # what the daemon puts on its runs
_WORKER_LOG_LEVEL = "WARNING"


def _worker_init(log_level: str, progress_queue=None) -> None:
    """A run worker: one torch thread each (the demo's runs are many small models: two
    processes on two cores beat two threads in one), the code location from the environment,
    progress reported to the parent's console when it has one."""
    import torch

    from mm_assets.console import listen_in_worker

    torch.set_num_threads(1)
    global _WORKER_LOG_LEVEL
    _WORKER_LOG_LEVEL = log_level
    listen_in_worker(progress_queue)


def _worker_run(job: str, partition: str | None) -> tuple[str, str | None, float]:
    import dagster as dg

    from mm_assets.definitions import defs

    started = time.perf_counter()
    defs.resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.get(), partition_key=partition, raise_on_error=True,
        run_config={"loggers": {"console": {"config": {"log_level": _WORKER_LOG_LEVEL}}}})
    return job, partition, time.perf_counter() - started


@contextlib.contextmanager
def dynamic_partitions_read_once(instance: dg.DagsterInstance):
    """Within it, each dynamic partition set is read from the instance once. An automation
    evaluation serializes every condition's subsets, and Dagster 1.13 re-reads the partition set
    from storage for each (half of a tick's time on the small graph, measured with py-spy); the
    sets cannot change during an evaluation, which launches nothing."""
    read, cache = instance.get_dynamic_partitions, {}

    def once(partitions_def_name: str) -> list[str]:
        if partitions_def_name not in cache:
            cache[partitions_def_name] = read(partitions_def_name)
        return list(cache[partitions_def_name])

    instance.get_dynamic_partitions = once
    try:
        yield
    finally:
        del instance.get_dynamic_partitions


@dataclass
class LocalGraph:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursor: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    sensor_cursors: dict[str, str | None] = field(default_factory=dict)
    log_level: str = "WARNING"      # of the console log of in-process runs (the event log keeps everything)
    _pool: ProcessPoolExecutor | None = None
    _channel: object = None

    @property
    def _run_config(self) -> dict:
        return {"loggers": {"console": {"config": {"log_level": self.log_level}}}}

    @property
    def resources(self) -> dict:
        return dict(self.defs.resources)

    def run(self, job: str, partition: str | None = None) -> dg.ExecuteInProcessResult:
        started = time.perf_counter()
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, partition_key=partition, raise_on_error=True, run_config=self._run_config)
        self.seconds[f"{job}[{partition}]" if partition else job] = time.perf_counter() - started
        return result

    def start_workers(self, n: int) -> None:
        """Run the jobs given to `run_all` in `n` worker processes that load the code location
        from the environment (MM_HOME, DAGSTER_HOME…, as `dagster dev` does) — for the demo; a
        graph built with other resources (tests) runs its jobs here, in this process."""
        from mm_assets.console import worker_channel

        context = multiprocessing.get_context("spawn")
        self._channel = worker_channel(context)
        self._pool = ProcessPoolExecutor(n, mp_context=context, initializer=_worker_init, initargs=(
            self.log_level, self._channel.queue if self._channel else None))

    def stop_workers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def run_all(self, requests: list[tuple[str, str | None]], done: Callable[[], None] = lambda: None) -> None:
        """Run jobs (job name, partition): in the worker processes when there are some (each run
        records itself in the same instance), else one after the other here. `done` is called
        after each run."""
        if self._pool is None:
            for job, partition in requests:
                self.run(job, partition)
                done()
            return
        futures = [self._pool.submit(_worker_run, job, None if p is None else str(p)) for job, p in requests]
        for future in as_completed(futures):
            self._record(future)
            done()

    def _record(self, future) -> None:
        """Wait for a worker's run (its exception raises here) and keep its seconds."""
        job, partition, seconds = future.result()
        self.seconds[f"{job}[{partition}]" if partition else job] = seconds

    def submit(self, job: str, partition: str | None = None):
        """Start one run in a worker process and return its future (None: run here, now, when
        there are no workers). Wait for it with `finish`."""
        if self._pool is None:
            self.run(job, partition)
            return None
        return self._pool.submit(_worker_run, job, None if partition is None else str(partition))

    def finish(self, name: str, future) -> None:
        """Wait for a run started by `submit` (a console stage while it is still running)."""
        if future is None:
            return
        with progress.stage(name, total=1, unit="runs") as stage:
            self._record(future)
            stage.advance()

    def run_stage(self, name: str, requests: list[tuple[str, str | None]], workers: bool = False) -> None:
        """Run jobs as one stage of the console (one line when done, a bar while running);
        `workers`: in the worker processes when there are some."""
        with progress.stage(name, total=len(requests), unit="runs") as stage:
            if workers:
                self.run_all(requests, done=stage.advance)
            else:
                for job, partition in requests:
                    self.run(job, partition)
                    stage.advance()

    def register_recipes(self) -> tuple[list[str], dict[str, str]]:
        """What the recipe sensor does: every recipe file becomes a `recipe` partition, then one
        observation of every section. Returns the runnable recipes and why the others are not."""
        recipes = self.defs.resources["recipes"]
        loaded = recipes.load_all()
        known = set(self.instance.get_dynamic_partitions(recipe_partitions.name))
        new = [n for n in recipes.partition_names() if n not in known]
        if new:
            self.instance.add_dynamic_partitions(recipe_partitions.name, new)
        self.run("observe_recipes_job")
        runnable = [n for n, r in loaded.items() if not isinstance(r, RecipeError)]
        return runnable, {n: str(r) for n, r in loaded.items() if isinstance(r, RecipeError)}

    def partition_keys(self, asset: str) -> list[str | None]:
        pdef = self.defs.resolve_asset_graph().get(dg.AssetKey(asset)).partitions_def
        if pdef is None:
            return [None]
        with dg.partition_loading_context(dynamic_partitions_store=self.instance):
            return list(pdef.get_partition_keys())

    def fill(self, eval_sets: bool = True, train: bool = False) -> dict[str, str]:
        """Materialize everything once; returns the recipes that were rejected, with the reason.
        The scores of a curation step (from the step registry) are computed only when some
        runnable recipe uses it; `train` also builds the base model and trains every recipe."""
        from resources.run_launcher import release_dead_runs

        started = time.perf_counter()
        release_dead_runs(self.instance)      # a killed earlier run must not hold the eval pool
        self.run_stage("ingest (source, domains, quarantine)", [("source_job", None)] + [
            ("ingest_domain_job", d) for d in DOMAINS] + [("quarantine_job", None)])
        with progress.stage("recipes"):
            runnable, rejected = self.register_recipes()
        used = {kind for recipe in self.defs.resources["recipes"].valid().values() for kind, _ in recipe.steps}
        if eval_sets or any("eval_embeddings" in s.score_assets for s in STEPS if s.kind in used):
            self.run_stage("eval sets", [("eval_sets_job", b) for b in BENCHMARKS])
        self.run_stage("embedder", [("embedder_job", None)])
        # With worker processes, the base model (the tower's pre-training: minutes at the study's
        # scale) is built in one of them while the other works through the curation stages; the
        # partitions of one stage are independent of each other, the stages run in order.
        base_model = self.submit("base_model_job") if train and self._pool is not None else None
        parallel = self._pool is not None
        self.run_stage("embeddings", [("embeddings_job", d) for d in DOMAINS], workers=parallel)
        scores = []               # steps share score assets (question embeddings, eval neighbours)
        for step in (s for s in STEPS if s.kind in used):
            scores += [a for a in step.score_assets if a not in scores]
        for asset in scores:      # in order: a score asset may read an earlier one
            self.run_stage(f"curation-step scores: {asset}", [(f"{asset}_job", p) for p in self.partition_keys(asset)],
                           workers=parallel)
        self.run_stage("step decisions", [("step_decisions_job", name) for name in runnable], workers=parallel)
        self.run_stage("curated datasets", [
            ("curated_dataset_job", dg.MultiPartitionKey({"recipe": name, "domain": d}))
            for name in runnable for d in DOMAINS], workers=parallel)
        if train:
            if base_model is None:
                self.run_stage("base model", [("base_model_job", None)])
            else:
                self.finish("base model", base_model)
            self.run_stage("training runs", [("training_job", name) for name in runnable], workers=True)
        self.seconds["fill"] = time.perf_counter() - started
        return rejected

    def evaluate_checkpoint(self, name: str, benchmarks=BENCHMARKS) -> None:
        """Register a checkpoint already in the checkpoint store, evaluate it, update the leaderboard."""
        from mm_assets.partitions import checkpoint_partitions

        if name not in self.instance.get_dynamic_partitions(checkpoint_partitions.name):
            self.instance.add_dynamic_partitions(checkpoint_partitions.name, [name])
        self.run("checkpoint_job", name)
        for b in benchmarks:
            self.run("eval_job", dg.MultiPartitionKey({"checkpoint": name, "benchmark": b}))
        self.run("leaderboard_job")

    def sensor_tick(self, name: str, done: Callable[[], None] = lambda: None) -> list[str]:
        """Evaluate a sensor once as the daemon would and run what it requests, in order
        (dynamic partitions first; `done` after each run). Returns the runs' names."""
        sensor = self.defs.resolve_sensor_def(name)
        resources = {k: v for k, v in self.resources.items() if k in sensor.required_resource_keys}
        with dg.build_sensor_context(instance=self.instance, cursor=self.sensor_cursors.get(name),
                                     resources=resources, definitions=self.defs) as ctx:
            result = sensor(ctx)
        if result is None or isinstance(result, dg.SkipReason):
            return []
        for req in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        self.sensor_cursors[name] = result.cursor
        requests = [(req.job_name, req.partition_key) for req in result.run_requests or []]
        self.run_all(requests, done)
        return [f"{job}[{partition}]" for job, partition in requests]

    def automation_tick(self) -> dict[str, list[str | None]]:
        """Evaluate the automation conditions once and run what they request."""
        with dynamic_partitions_read_once(self.instance):
            result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        requested: dict[str, list[str | None]] = {}
        with dg.partition_loading_context(effective_dt=datetime.datetime.now(), dynamic_partitions_store=self.instance):
            for r in result.results:
                if r.true_subset.size:
                    requested[r.key.to_user_string()] = sorted(
                        (ap.partition_key for ap in r.true_subset.expensively_compute_asset_partitions()),
                        key=lambda p: p or "")
        assets = list(self.defs.assets)
        order = [k.to_user_string() for k in self.defs.resolve_asset_graph().toposorted_asset_keys]
        for key in sorted(requested, key=order.index):        # parents before children
            for partition in requested[key]:
                # like a daemon run: a failure is recorded in the instance and the next runs go on
                dg.materialize(assets, selection=[key], partition_key=partition, instance=self.instance,
                               resources=self.resources, raise_on_error=False, run_config=self._run_config,
                               tags=AUTOMATION_TAGS)
        return requested

    def settle(self, max_ticks: int = 10) -> list[dict]:
        """Tick until automation requests nothing more; returns every tick's requests."""
        ticks = []
        for _ in range(max_ticks):
            ticks.append(self.automation_tick())
            if not ticks[-1]:
                return ticks
        raise RuntimeError(f"automation did not settle in {max_ticks} ticks: {ticks}")

    def materializations(self) -> dict[tuple[str, str | None], int]:
        """Materializations per (asset key, partition) of every asset, as the acceptance counts them."""
        out: dict[tuple[str, str | None], int] = {}
        graph = self.defs.resolve_asset_graph()
        for asset_key in graph.materializable_asset_keys:
            key, cursor = asset_key.to_user_string(), None
            while True:
                page = self.instance.fetch_materializations(asset_key, limit=10000, cursor=cursor)
                for rec in page.records:
                    out[(key, rec.partition_key)] = out.get((key, rec.partition_key), 0) + 1
                if not page.has_more:
                    break
                cursor = page.cursor
        return out

    def _latest(self, key: str, partition: str | None) -> dg.AssetMaterialization:
        return self.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None),
            limit=1).records[0].asset_materialization

    def meta(self, key: str, partition: str | None = None) -> dict:
        return {k: v.value for k, v in self._latest(key, partition).metadata.items()}

    def data_version(self, key: str, partition: str | None = None) -> str:
        return self._latest(key, partition).tags["dagster/data_version"]


def new_materializations(before: dict, after: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
