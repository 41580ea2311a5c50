"""Resource values from the environment: the embedded default or a production config.

- `MM_HOME` (default `<repo>/.demo`): the demo's home; artifacts under `MM_HOME/artifacts`,
  look-alike data under `MM_HOME/sample_data`, the Dagster instance in `MM_HOME/dagster_home`.
- `MM_STORAGE_ROOT` / `MM_STORAGE_OPTIONS` (JSON): artifact storage, e.g. `s3://bucket/prefix`.
- `MM_SOURCE_CONFIG`: a YAML file with the `MammothSourceResource` fields (real data; see README).
- `MM_RECIPES` (default `<repo>/recipes`): the directory of curation recipe files; a relative
  path is relative to `MM_HOME` (the study's home names its own `recipes/` so).

A home may carry its own defaults for any of these variables in `MM_HOME/settings.json`
(`{"MM_TRAIN_SEEDS": "0,1,2", ...}`; `mm-curation study` writes one), so the UI and the
command line opened on that home use the settings it was built with; the environment wins.
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


def home_settings() -> dict[str, str]:
    path = mm_home() / "settings.json"
    return {k: str(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def setting(name: str, default: str | None = None) -> str | None:
    """An environment variable, else the home's `settings.json`, else `default`."""
    value = os.environ.get(name)
    return value if value is not None else home_settings().get(name, default)


def sample_data_dir() -> Path:
    return Path(setting("MM_SAMPLE_DATA", mm_home() / "sample_data")).resolve()


def storage_resource() -> StorageResource:
    root = setting("MM_STORAGE_ROOT", str(mm_home() / "artifacts"))
    options = json.loads(setting("MM_STORAGE_OPTIONS", "{}"))
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
        samples_per_shard=int(setting("MM_SAMPLES_PER_SHARD", "250")),
        planted_truth=str(root / "truth" / "planted_truth.json"),
        image_content=str(root / "content" / "image_content.jsonl"),
        trusted=SourceFiles(name="trusted", annotations=str(root / "trusted" / "mammoth_si.json"),
                            images=str(root / "trusted" / "images")),
    )


def source_resource() -> MammothSourceResource:
    config = setting("MM_SOURCE_CONFIG")
    if not config:
        return sample_data_source(sample_data_dir())
    with open(config) as f:
        fields = yaml.safe_load(f)
    return MammothSourceResource(**fields)


def embedder_resource() -> EmbedderResource:
    """`MM_EMBEDDER_MODEL`: a SigLIP2 checkpoint path/id; default "tiny" (built and trained locally)."""
    return EmbedderResource(model=setting("MM_EMBEDDER_MODEL", "tiny"),
                            train_steps=int(setting("MM_EMBEDDER_TRAIN_STEPS", "240")))


def recipes_resource() -> RecipesResource:
    return RecipesResource(directory=str(mm_home() / setting("MM_RECIPES", str(REPO_ROOT / "recipes"))))


def checkpoint_store_resource():
    """`MM_CHECKPOINTS` (default `MM_HOME/checkpoints`): a directory or an s3:// prefix;
    `MM_EVAL_ON_REGISTER`: comma-separated benchmarks each new checkpoint is evaluated on (default all)."""
    from resources.evaluation import CheckpointStoreResource
    options = json.loads(setting("MM_CHECKPOINTS_OPTIONS", setting("MM_STORAGE_OPTIONS", "{}")))
    return CheckpointStoreResource(root=setting("MM_CHECKPOINTS", str(mm_home() / "checkpoints")),
                                   storage_options=options,
                                   evaluate_on=[b for b in setting("MM_EVAL_ON_REGISTER", "").split(",") if b])


def eval_backend_resource():
    """`MM_EVAL_BACKEND` = hf (default) | vllm; `MM_EVAL_BATCH_SIZE`, `MM_EVAL_MAX_ITEMS`."""
    from resources.evaluation import EvalBackendResource
    return EvalBackendResource(kind=setting("MM_EVAL_BACKEND", "hf"),
                               batch_size=int(setting("MM_EVAL_BATCH_SIZE", "16")),
                               max_items=int(setting("MM_EVAL_MAX_ITEMS", "0")))


def mlflow_resource():
    """`MLFLOW_TRACKING_URI` if set, else a local SQLite store `MM_HOME/mlflow.db`.
    `MM_MLFLOW_ARTIFACTS`: where new experiments keep their artifacts, e.g. `s3://bucket/mlruns`
    (MLflow's S3 client takes `MLFLOW_S3_ENDPOINT_URL` and the AWS credentials from the
    environment); default `MM_HOME/mlruns` with a local store, the server's own with a tracking
    server (a local path there would put every run worker's artifacts on its own disk)."""
    from resources.evaluation import MlflowResource
    server = os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://", "databricks"))
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mm_home() / 'mlflow.db'}"
    return MlflowResource(tracking_uri=uri, artifact_root=setting(
        "MM_MLFLOW_ARTIFACTS", "" if server else (mm_home() / "mlruns").as_uri()))


def training_resource():
    """`MM_TRAIN_BASE_MODEL` (LLaVA-format path, default "tiny"), `MM_TRAIN_BUDGET_TOKENS` (the
    training budget of every recipe), `MM_TRAIN_CHECKPOINTS` (comma-separated budget fractions),
    `MM_TRAIN_SEEDS` (comma-separated training seeds, one run per seed; default 0),
    `MM_TOWER_SCENES` / `MM_TOWER_EPOCHS` (the tiny tower's dense pre-training)."""
    from resources.training import TrainingResource
    fields = {"base_model": setting("MM_TRAIN_BASE_MODEL", "tiny")}
    if setting("MM_TOWER_SCENES"):
        fields["tower_scenes"] = int(setting("MM_TOWER_SCENES"))
    if setting("MM_TOWER_EPOCHS"):
        fields["tower_epochs"] = int(setting("MM_TOWER_EPOCHS"))
    if setting("MM_TRAIN_BUDGET_TOKENS"):
        fields["budget_tokens"] = int(setting("MM_TRAIN_BUDGET_TOKENS"))
    if setting("MM_TRAIN_CHECKPOINTS"):
        fields["checkpoint_fractions"] = [float(f) for f in setting("MM_TRAIN_CHECKPOINTS").split(",")]
    if setting("MM_TRAIN_SEEDS"):
        fields["seeds"] = [int(s) for s in setting("MM_TRAIN_SEEDS").split(",")]
    return TrainingResource(**fields)


def mixing_resource():
    """`MM_MIXING_RECIPE` (default baseline), `MM_MIXING_START_TOKENS`, `MM_MIXING_EXPERT_TOKENS`
    (0: one pass over the largest domain)."""
    from resources.mixing import MixingResource
    fields = {"recipe": setting("MM_MIXING_RECIPE", "baseline")}
    if setting("MM_MIXING_START_TOKENS"):
        fields["start_budget_tokens"] = int(setting("MM_MIXING_START_TOKENS"))
    if setting("MM_MIXING_EXPERT_TOKENS"):
        fields["expert_budget_tokens"] = int(setting("MM_MIXING_EXPERT_TOKENS"))
    return MixingResource(**fields)


def canaries_resource():
    """`MM_CANARIES`: a canary file (one sample_id per line); unset = the planted truth of generated data."""
    from resources.canaries import CanariesResource
    return CanariesResource(path=setting("MM_CANARIES", ""))


def ray_cluster_resource():
    """`MM_RAY_ADDRESS` (unset: in process), `MM_RAY_CPUS_PER_SHARD`, `MM_RAY_GPUS_PER_SHARD`,
    `MM_RAY_MEMORY_MB_PER_SHARD`: the Ray cluster the per-sample steps map their shards over."""
    from resources.ray_cluster import RayClusterResource
    return RayClusterResource(address=setting("MM_RAY_ADDRESS", ""),
                              num_cpus_per_shard=float(setting("MM_RAY_CPUS_PER_SHARD", "1")),
                              num_gpus_per_shard=float(setting("MM_RAY_GPUS_PER_SHARD", "0")),
                              memory_mb_per_shard=int(setting("MM_RAY_MEMORY_MB_PER_SHARD", "0")))


def default_resources() -> dict:
    """Every resource of the code location, from the environment."""
    return {"storage": storage_resource(), "mammoth": source_resource(), "embedder_model": embedder_resource(),
            "recipes": recipes_resource(), "checkpoints": checkpoint_store_resource(),
            "eval_backend": eval_backend_resource(), "mlflow": mlflow_resource(), "training": training_resource(),
            "canaries": canaries_resource(), "ray_cluster": ray_cluster_resource(), "mixing": mixing_resource()}
