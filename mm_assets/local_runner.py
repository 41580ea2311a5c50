"""Run the asset graph in-process against a persistent Dagster instance (demo, tests, bench).

`fill` materializes the graph the way a first backfill does (automation never requests assets
that were missing on its first tick). `automation_tick` evaluates the automation conditions
exactly as the automation sensor's tick does and materializes what they request, parents
before children — the daemon's behaviour without the daemon, for measurements and tests.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

import dagster as dg

from mm_assets.partitions import SPACES, recipe_partitions
from mm_assets.recipes.schema import RecipeError
from mm_assets.taxonomy import BENCHMARKS, DOMAINS

# Parents before children, for the assets automation can request.
AUTOMATION_ORDER = ["relevance_scores", "eval_embeddings", "eval_neighbours", "perplexity_scores",
                    "semdedup_scores", "semdedup_mask", "perplexity_decisions", "relevance_decisions",
                    "rephrase_decisions", "mining_decisions", "decontamination_decisions", "curated_dataset"]
# What each step needs computed once (expensive, recipe-independent) before its decisions.
STEP_PREREQUISITES = {
    "perplexity": [("trusted_pool_job", None), ("reference_model_job", None), ("perplexity_scores_job", DOMAINS)],
    "relevance": [("question_embeddings_job", DOMAINS), ("relevance_scores_job", DOMAINS)],
    "mining": [("question_embeddings_job", DOMAINS), ("eval_embeddings_job", BENCHMARKS), ("eval_neighbours_job", None)],
    "decontamination": [("question_embeddings_job", DOMAINS), ("eval_embeddings_job", BENCHMARKS),
                        ("eval_neighbours_job", None)],
}


@dataclass
class LocalGraph:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursor: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    sensor_cursors: dict[str, str | None] = field(default_factory=dict)
    log_level: str = "WARNING"      # of the console log of in-process runs (the event log keeps everything)

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

    def register_recipes(self) -> tuple[list[str], dict[str, str]]:
        """What the recipe sensor does: every recipe file becomes a `recipe` partition, then one
        observation of every section. Returns the runnable recipes and why the others are not."""
        loaded = self.defs.resources["recipes"].load_all()
        known = set(self.instance.get_dynamic_partitions(recipe_partitions.name))
        new = [n for n in loaded if n not in known]
        if new:
            self.instance.add_dynamic_partitions(recipe_partitions.name, new)
        self.run("observe_recipes_job")
        runnable = [n for n, r in loaded.items() if not isinstance(r, RecipeError)]
        return runnable, {n: str(r) for n, r in loaded.items() if isinstance(r, RecipeError)}

    def fill(self, eval_sets: bool = True) -> dict[str, str]:
        """Materialize everything once; returns the recipes that were rejected, with the reason.
        The scores of a curation step are computed only when some runnable recipe uses it."""
        started = time.perf_counter()
        self.run("source_job")
        for d in DOMAINS:
            self.run("ingest_domain_job", d)
        self.run("quarantine_job")
        runnable, rejected = self.register_recipes()
        used = {kind for recipe in self.defs.resources["recipes"].valid().values() for kind, _ in recipe.steps}
        if eval_sets or used & {"mining", "decontamination"}:
            for b in BENCHMARKS:
                self.run("eval_sets_job", b)
        self.run("embedder_job")
        for d in DOMAINS:
            self.run("embeddings_job", d)
        done = set()              # steps share prerequisites (question embeddings, eval neighbours)
        for step in (s for s in STEP_PREREQUISITES if s in used):
            for job, partitions in STEP_PREREQUISITES[step]:
                for p in partitions or [None]:
                    if (job, p) not in done:
                        self.run(job, p)
                        done.add((job, p))
        for space in SPACES:
            self.run("semdedup_scores_job", space)
        for name in runnable:
            self.run("step_decisions_job", name)
            for d in DOMAINS:
                self.run("curated_dataset_job", dg.MultiPartitionKey({"recipe": name, "domain": d}))
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

    def sensor_tick(self, name: str) -> list[str]:
        """Evaluate a sensor once as the daemon would and run what it requests, in order
        (dynamic partitions first). Returns the runs' names."""
        sensor = self.defs.resolve_sensor_def(name)
        resources = {k: v for k, v in self.resources.items() if k in sensor.required_resource_keys}
        with dg.build_sensor_context(instance=self.instance, cursor=self.sensor_cursors.get(name),
                                     resources=resources, definitions=self.defs) as ctx:
            result = sensor(ctx)
        if result is None or isinstance(result, dg.SkipReason):
            return []
        for req in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        self.sensor_cursors[name] = result.cursor
        ran = []
        for req in result.run_requests:
            self.run(req.job_name, req.partition_key)
            ran.append(f"{req.job_name}[{req.partition_key}]")
        return ran

    def automation_tick(self) -> dict[str, list[str | None]]:
        """Evaluate the automation conditions once and run what they request."""
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
        for key in sorted(requested, key=AUTOMATION_ORDER.index):
            for partition in requested[key]:
                # like a daemon run: a failure is recorded in the instance and the next runs go on
                dg.materialize(assets, selection=[key], partition_key=partition, instance=self.instance,
                               resources=self.resources, raise_on_error=False, run_config=self._run_config)
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
        """Materializations per (asset key, partition), as the acceptance counts them."""
        out: dict[tuple[str, str | None], int] = {}
        for key in ("samples", "embedder", "embeddings", *AUTOMATION_ORDER):
            for rec in self.instance.fetch_materializations(dg.AssetKey(key), limit=10000).records:
                out[(key, rec.partition_key)] = out.get((key, rec.partition_key), 0) + 1
        return out

    def meta(self, key: str, partition: str | None = None) -> dict:
        rec = self.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None), limit=1).records[0]
        return {k: v.value for k, v in rec.asset_materialization.metadata.items()}


def new_materializations(before: dict, after: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
