"""Resource values from the environment: the embedded default or a production config.

- `MM_HOME` (default `<repo>/.demo`): the demo's home; artifacts under `MM_HOME/artifacts`,
  look-alike data under `MM_HOME/sample_data`, the Dagster instance in `MM_HOME/dagster_home`.
- `MM_STORAGE_ROOT` / `MM_STORAGE_OPTIONS` (JSON): artifact storage, e.g. `s3://bucket/prefix`.
- `MM_SOURCE_CONFIG`: a YAML file with the `MammothSourceResource` fields (real data; see README).
- `MM_RECIPES` (default `<repo>/recipes`): the directory of curation recipe files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from resources.data_source import MammothSourceResource, SourceFiles
from resources.models import EmbedderResource
from resources.recipes import RecipesResource
from resources.storage import StorageResource

REPO_ROOT = Path(__file__).resolve().parent.parent


def mm_home() -> Path:
    return Path(os.environ.get("MM_HOME", REPO_ROOT / ".demo")).resolve()


def sample_data_dir() -> Path:
    return Path(os.environ.get("MM_SAMPLE_DATA", mm_home() / "sample_data")).resolve()


def storage_resource() -> StorageResource:
    root = os.environ.get("MM_STORAGE_ROOT", str(mm_home() / "artifacts"))
    options = json.loads(os.environ.get("MM_STORAGE_OPTIONS", "{}"))
    return StorageResource(root=root, storage_options=options)


def sample_data_source(root: Path) -> MammothSourceResource:
    """The look-alike data written by `mm-curation sample-data`: the main and dirty sources."""
    return MammothSourceResource(
        sources=[SourceFiles(name="main", annotations=str(root / "main" / "mammoth_si.json"),
                             images=str(root / "main" / "images")),
                 SourceFiles(name="dirty", annotations=str(root / "dirty" / "mammoth_si.json"),
                             images=str(root / "dirty" / "images"))],
        domain_map=str(root / "source_to_domain.json"),
        eval_dir=str(root / "eval"),
        samples_per_shard=int(os.environ.get("MM_SAMPLES_PER_SHARD", "250")),
        planted_truth=str(root / "truth" / "planted_truth.json"),
        trusted=SourceFiles(name="trusted", annotations=str(root / "trusted" / "mammoth_si.json"),
                            images=str(root / "trusted" / "images")),
    )


def source_resource() -> MammothSourceResource:
    config = os.environ.get("MM_SOURCE_CONFIG")
    if not config:
        return sample_data_source(sample_data_dir())
    with open(config) as f:
        fields = yaml.safe_load(f)
    return MammothSourceResource(**fields)


def embedder_resource() -> EmbedderResource:
    """`MM_EMBEDDER_MODEL`: a SigLIP2 checkpoint path/id; default "tiny" (built and trained locally)."""
    return EmbedderResource(model=os.environ.get("MM_EMBEDDER_MODEL", "tiny"),
                            train_steps=int(os.environ.get("MM_EMBEDDER_TRAIN_STEPS", "240")))


def recipes_resource() -> RecipesResource:
    return RecipesResource(directory=os.environ.get("MM_RECIPES", str(REPO_ROOT / "recipes")))


def checkpoint_store_resource():
    """`MM_CHECKPOINTS` (default `MM_HOME/checkpoints`): a directory or an s3:// prefix;
    `MM_EVAL_ON_REGISTER`: comma-separated benchmarks each new checkpoint is evaluated on (default all)."""
    from resources.evaluation import CheckpointStoreResource
    options = json.loads(os.environ.get("MM_CHECKPOINTS_OPTIONS", os.environ.get("MM_STORAGE_OPTIONS", "{}")))
    return CheckpointStoreResource(root=os.environ.get("MM_CHECKPOINTS", str(mm_home() / "checkpoints")),
                                   storage_options=options,
                                   evaluate_on=[b for b in os.environ.get("MM_EVAL_ON_REGISTER", "").split(",") if b])


def eval_backend_resource():
    """`MM_EVAL_BACKEND` = hf (default) | vllm; `MM_EVAL_BATCH_SIZE`, `MM_EVAL_MAX_ITEMS`."""
    from resources.evaluation import EvalBackendResource
    return EvalBackendResource(kind=os.environ.get("MM_EVAL_BACKEND", "hf"),
                               batch_size=int(os.environ.get("MM_EVAL_BATCH_SIZE", "16")),
                               max_items=int(os.environ.get("MM_EVAL_MAX_ITEMS", "0")))


def mlflow_resource():
    """`MLFLOW_TRACKING_URI` if set, else a local SQLite store `MM_HOME/mlflow.db` (artifacts in `MM_HOME/mlruns`)."""
    from resources.evaluation import MlflowResource
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mm_home() / 'mlflow.db'}"
    return MlflowResource(tracking_uri=uri, artifact_root=(mm_home() / "mlruns").as_uri())


def training_resource():
    """`MM_TRAIN_BASE_MODEL` (LLaVA-format path, default "tiny"), `MM_TRAIN_BUDGET_TOKENS` (the
    training budget of every recipe), `MM_TRAIN_CHECKPOINTS` (comma-separated budget fractions),
    `MM_TRAIN_SEEDS` (comma-separated training seeds, one run per seed; default 0)."""
    from resources.training import TrainingResource
    fields = {"base_model": os.environ.get("MM_TRAIN_BASE_MODEL", "tiny")}
    if os.environ.get("MM_TRAIN_BUDGET_TOKENS"):
        fields["budget_tokens"] = int(os.environ["MM_TRAIN_BUDGET_TOKENS"])
    if os.environ.get("MM_TRAIN_CHECKPOINTS"):
        fields["checkpoint_fractions"] = [float(f) for f in os.environ["MM_TRAIN_CHECKPOINTS"].split(",")]
    if os.environ.get("MM_TRAIN_SEEDS"):
        fields["seeds"] = [int(s) for s in os.environ["MM_TRAIN_SEEDS"].split(",")]
    return TrainingResource(**fields)


def canaries_resource():
    """`MM_CANARIES`: a canary file (one sample_id per line); unset = the planted truth of generated data."""
    from resources.canaries import CanariesResource
    return CanariesResource(path=os.environ.get("MM_CANARIES", ""))


def default_resources() -> dict:
    """Every resource of the code location, from the environment."""
    return {"storage": storage_resource(), "mammoth": source_resource(), "embedder_model": embedder_resource(),
            "recipes": recipes_resource(), "checkpoints": checkpoint_store_resource(),
            "eval_backend": eval_backend_resource(), "mlflow": mlflow_resource(), "training": training_resource(),
            "canaries": canaries_resource()}
