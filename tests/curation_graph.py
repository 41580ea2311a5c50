"""A curation graph on the demo data in a temporary home, for the tests that need one.

The embedder is a tiny SigLIP2 checkpoint given by path (the production path, no training),
so these tests check mechanisms, not embedding quality.
"""

from __future__ import annotations

import shutil
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


SHIPPED_RECIPES = ("baseline", "semdedup10", "ppl_top50", "rephrase", "mining", "v1")


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
                **overrides) -> Graph:
    """`overrides`: further resources (e.g. training settings); the checkpoint store and MLflow
    default to the temporary home, never to the environment's MM_HOME."""
    from mm_assets.embeddings.model import build_tiny_siglip2, save_embedder

    home.mkdir(parents=True, exist_ok=True)
    checkpoint = home / "siglip2"
    save_embedder(*build_tiny_siglip2(seed=0), checkpoint)
    recipes_dir = home / "recipes"
    recipes_dir.mkdir()
    for name in recipes:
        shutil.copyfile(REPO_ROOT / "recipes" / f"{name}.yaml", recipes_dir / f"{name}.yaml")
    root = home / "artifacts"
    defs = build_definitions(storage=StorageResource(root=str(root)), mammoth=sample_data_source(sample_data),
                             embedder_model=EmbedderResource(model=str(checkpoint)),
                             recipes=RecipesResource(directory=str(recipes_dir)),
                             **{"checkpoints": CheckpointStoreResource(root=str(home / "checkpoints")),
                                "mlflow": MlflowResource(tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
                                                         artifact_root=(home / "mlruns").as_uri()),
                                **overrides})
    (home / "dagster_home").mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home / "dagster_home"))
    return Graph(defs, instance, home=home, storage=Storage(str(root)), recipes_dir=recipes_dir)


def cold_fill(g: Graph) -> None:
    g.fill(eval_sets=False)
