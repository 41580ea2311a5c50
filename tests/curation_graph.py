"""A curation graph on the demo data in a temporary home, for the tests that need one.

The embedder is a tiny SigLIP2 checkpoint given by path (the production path, no training),
so these tests check mechanisms, not embedding quality.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mm_assets.definitions import build_definitions
from mm_assets.local_runner import LocalGraph
from mm_assets.storage import Storage
from resources.evaluation import CheckpointStoreResource, MlflowResource
from resources.models import EmbedderResource
from resources.recipes import RecipesResource
from resources.settings import REPO_ROOT, sample_data_source
from resources.storage import StorageResource


# The base model's tower pre-training at a test's size, as conftest puts it in the environment
# (for the processes the tests start), for the resources the tests build themselves.
TEST_TOWER = {"tower_scenes": int(os.environ["MM_TOWER_SCENES"]), "tower_epochs": int(os.environ["MM_TOWER_EPOCHS"])}
SHIPPED_RECIPES = ("baseline", "semdedup10", "ppl_top50", "rephrase", "mining", "v1", "oracle")


@dataclass
class Graph(LocalGraph):
    home: Path = None
    storage: Storage = None
    recipes_dir: Path = None

    def write_recipe(self, name: str, text: str) -> None:
        (self.recipes_dir / f"{name}.yaml").write_text(text)

    def counts(self) -> dict:
        return self.materializations()


def build_graph(home: Path, sample_data: Path, recipes: tuple[str, ...] = ("baseline", "semdedup10"),
                instance_yaml: Path = REPO_ROOT / "dagster.yaml", **overrides) -> Graph:
    """A new home: the tiny embedder, the given shipped recipes, an empty instance; then
    `open_graph`. `overrides`: further resources (e.g. training settings, or storage on
    S3); artifact storage, the checkpoint store and MLflow default to the temporary home, never
    to the environment's MM_HOME."""
    from mm_assets.embeddings.model import build_tiny_siglip2, save_embedder

    home.mkdir(parents=True, exist_ok=True)
    save_embedder(*build_tiny_siglip2(seed=0), home / "siglip2")
    (home / "recipes").mkdir()
    for name in recipes:          # a name under recipes/ ("v1", or "study/v2")
        shutil.copyfile(REPO_ROOT / "recipes" / f"{name}.yaml", home / "recipes" / f"{Path(name).name}.yaml")
    (home / "dagster_home").mkdir()
    # e.g. deploy/dagster-postgres.yaml, whose env vars this process and any server on the home need
    shutil.copyfile(instance_yaml, home / "dagster_home" / "dagster.yaml")
    return open_graph(home, sample_data, **overrides)


def open_graph(home: Path, sample_data: Path, **overrides) -> Graph:
    """The graph of an existing home (made by `build_graph`, or a copy of one), in any process."""
    defs = build_definitions(mammoth=sample_data_source(sample_data),
                             embedder_model=EmbedderResource(model=str(home / "siglip2")),
                             recipes=RecipesResource(directory=str(home / "recipes")),
                             **{"storage": StorageResource(root=str(home / "artifacts")),
                                "checkpoints": CheckpointStoreResource(root=str(home / "checkpoints")),
                                "mlflow": MlflowResource(tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
                                                         artifact_root=(home / "mlruns").as_uri()),
                                **overrides})
    instance = dg.DagsterInstance.from_config(str(home / "dagster_home"))
    return Graph(defs, instance, home=home, storage=defs.resources["storage"].get(), recipes_dir=home / "recipes")


@contextlib.contextmanager
def copy_graph(g: Graph, home: Path, sample_data: Path, **overrides) -> Iterator[Graph]:
    """A copy of `g`'s home at `home`, opened with `overrides` (resources rooted in the copy),
    carrying on from `g`'s automation cursor: its ticks request only what changes after the copy.
    For a test whose edits would otherwise need restoring (a restore re-runs what the edit did);
    removed afterwards."""
    shutil.copytree(g.home, home)
    copy = open_graph(home, sample_data, **overrides)
    copy.cursor = g.cursor
    try:
        yield copy
    finally:
        shutil.rmtree(home, ignore_errors=True)


def small_graph_resources(home: Path, budget_tokens: int) -> dict:
    """The training, checkpoint-store and evaluation settings of the tests' small graph."""
    from resources.evaluation import EvalBackendResource
    from resources.training import TrainingResource

    return {"training": TrainingResource(budget_tokens=budget_tokens, checkpoint_fractions=[0.5, 1.0],
                                         batch_size=4, max_len=384, lr=3e-3, warmup=2, **TEST_TOWER),
            "checkpoints": CheckpointStoreResource(root=str(home / "checkpoints"), evaluate_on=["countbench"]),
            "eval_backend": EvalBackendResource(batch_size=8, max_items=4)}


def cold_fill(g: Graph) -> None:
    g.fill(eval_sets=False)
