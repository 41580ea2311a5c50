"""A curation graph on the demo data in a temporary home, for the tests that need one.

The embedder is a tiny SigLIP2 checkpoint given by path (the production path, no training),
so these tests check mechanisms, not embedding quality. Jobs run in-process, exactly as the
demo runs them; `automation_tick` evaluates the automation sensor's conditions the way the
daemon does and materializes what they request, parents before children.
"""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mm_assets.definitions import ASSETS, build_definitions
from mm_assets.partitions import SPACES, recipe_partitions
from mm_assets.storage import Storage
from mm_assets.taxonomy import DOMAINS
from resources.json_io_manager import JsonPointerIOManager
from resources.models import EmbedderResource
from resources.recipes import RecipesResource
from resources.settings import REPO_ROOT, sample_data_source
from resources.storage import StorageResource

RUN_ORDER = ["recipe/semdedup_clustering", "recipe/semdedup_threshold", "recipe/plan",
             "semdedup_scores", "semdedup_mask", "curated_dataset"]


@dataclass
class Graph:
    home: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance
    storage: Storage
    recipes_dir: Path
    resources: dict
    cursor: str | None = None
    seconds: dict = field(default_factory=dict)

    def run(self, job: str, partition: str | None = None) -> dg.ExecuteInProcessResult:
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, partition_key=partition, raise_on_error=True)
        assert result.success
        return result

    def observe_recipes(self) -> None:
        """What the recipe sensor does: register new recipe files, observe every section."""
        names = sorted(p.stem for p in self.recipes_dir.glob("*.yaml"))
        known = set(self.instance.get_dynamic_partitions(recipe_partitions.name))
        new = [n for n in names if n not in known]
        if new:
            self.instance.add_dynamic_partitions(recipe_partitions.name, new)
        self.run("observe_recipes_job")

    def write_recipe(self, name: str, text: str) -> None:
        (self.recipes_dir / f"{name}.yaml").write_text(text)

    def materializations(self, key: str, partition: str | None = None) -> int:
        return len(self.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_user_string(key),
            asset_partitions=[partition] if partition else None), limit=10000).records)

    def counts(self) -> dict[tuple[str, str | None], int]:
        """Materializations per asset key and partition (the acceptance counts these)."""
        out = {}
        for key in ("embeddings", "semdedup_scores", "semdedup_mask", "curated_dataset", "samples"):
            for rec in self.instance.fetch_materializations(dg.AssetKey(key), limit=10000).records:
                k = (key, rec.partition_key)
                out[k] = out.get(k, 0) + 1
        return out

    def meta(self, key: str, partition: str | None = None) -> dict:
        rec = self.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None), limit=1).records[0]
        return {k: v.value for k, v in rec.asset_materialization.metadata.items()}

    def automation_tick(self) -> dict[str, list[str | None]]:
        """Evaluate the automation conditions once (as the sensor's tick) and run what they ask for."""
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        requested: dict[str, list[str | None]] = {}
        with dg.partition_loading_context(effective_dt=datetime.datetime.now(), dynamic_partitions_store=self.instance):
            for r in result.results:
                if r.true_subset.size:
                    key = r.key.to_user_string()
                    requested[key] = sorted(
                        (ap.partition_key for ap in r.true_subset.expensively_compute_asset_partitions()),
                        key=lambda p: p or "")
        for key in sorted(requested, key=RUN_ORDER.index):
            for partition in requested[key]:
                # like a daemon run: a failure is recorded in the instance, the next runs go on
                dg.materialize(ASSETS, selection=[key], partition_key=partition, instance=self.instance,
                               resources=self.resources, raise_on_error=False)
        return requested


def build_graph(home: Path, sample_data: Path, recipes: dict[str, str] | None = None) -> Graph:
    from mm_assets.embeddings.model import build_tiny_siglip2, save_embedder

    checkpoint = home / "siglip2"
    save_embedder(*build_tiny_siglip2(seed=0), checkpoint)
    recipes_dir = home / "recipes"
    recipes_dir.mkdir()
    if recipes is None:
        for name in ("baseline", "semdedup10"):
            shutil.copyfile(REPO_ROOT / "recipes" / f"{name}.yaml", recipes_dir / f"{name}.yaml")
    else:
        for name, text in recipes.items():
            (recipes_dir / f"{name}.yaml").write_text(text)
    root = home / "artifacts"
    storage = StorageResource(root=str(root))
    resources = {"storage": storage, "mammoth": sample_data_source(sample_data),
                 "embedder_model": EmbedderResource(model=str(checkpoint)),
                 "recipes": RecipesResource(directory=str(recipes_dir))}
    defs = build_definitions(**resources)
    resources["io_manager"] = JsonPointerIOManager(storage=storage)
    (home / "dagster_home").mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home / "dagster_home"))
    return Graph(home, defs, instance, Storage(str(root)), recipes_dir, resources)


def cold_fill(g: Graph) -> None:
    """The first fill is a backfill (automation never requests assets missing on its first tick)."""
    import time

    started = time.perf_counter()
    g.run("source_job")
    for d in DOMAINS:
        g.run("ingest_domain_job", d)
    g.run("embedder_job")
    for d in DOMAINS:
        g.run("embeddings_job", d)
    g.observe_recipes()
    for space in SPACES:
        g.run("semdedup_scores_job", space)
    for name in g.instance.get_dynamic_partitions(recipe_partitions.name):
        g.run("semdedup_mask_job", name)
        for d in DOMAINS:
            g.run("curated_dataset_job", dg.MultiPartitionKey({"recipe": name, "domain": d}))
    g.seconds["cold_fill"] = time.perf_counter() - started
