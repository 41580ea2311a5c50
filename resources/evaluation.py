"""Resources of the evaluation stage: the checkpoint store, the inference backend, MLflow."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from mm_assets.storage import Storage


class CheckpointStoreResource(dg.ConfigurableResource):
    """Where checkpoints are written and watched: a local directory or an `s3://` prefix."""

    root: str = Field(description="directory or s3:// prefix holding one directory per checkpoint")
    storage_options: dict = Field(default_factory=dict)
    evaluate_on: list[str] = Field(default_factory=list,
                                   description="benchmarks the sensor evaluates every new checkpoint on (empty = all)")

    def get(self) -> Storage:
        return Storage(self.root, self.storage_options)

    def benchmarks(self) -> tuple[str, ...]:
        from mm_assets.taxonomy import BENCHMARKS
        unknown = sorted(set(self.evaluate_on) - set(BENCHMARKS))
        if unknown:
            raise ValueError(f"evaluate_on names unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
        return tuple(b for b in BENCHMARKS if b in self.evaluate_on) if self.evaluate_on else BENCHMARKS


class EvalBackendResource(dg.ConfigurableResource):
    """How checkpoints generate: `hf` (transformers, batched greedy with KV cache and left
    padding; the default) or `vllm` (the `gpu` extra)."""

    kind: str = Field(default="hf", description="hf | vllm")
    batch_size: int = Field(default=16, gt=0)
    device: str = "cpu"
    max_items: int = Field(default=0, ge=0, description="evaluate only the first N items (0 = all)")


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking: every eval is one run with params, metrics, predictions and lineage tags."""

    tracking_uri: str = Field(description="e.g. sqlite:///path/mlflow.db (the local default) or http://host:5000")
    artifact_root: str = Field(default="", description="artifact location of new experiments (default: MLflow's)")
    experiment: str = "mm-curation-evals"

    @contextlib.contextmanager
    def session(self, experiment: str | None = None) -> Iterator[str]:
        """Yields the experiment id with the tracking URI set. For a local SQLite store the
        session holds a file lock: concurrent eval processes would otherwise race to create
        the schema (alembic) and collide on writes."""
        import mlflow

        lock = contextlib.nullcontext()
        if self.tracking_uri.startswith("sqlite:///"):
            from filelock import FileLock
            lock = FileLock(self.tracking_uri.removeprefix("sqlite:///") + ".lock", timeout=300)
        # mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in the process environment, where
        # the next resource built from the environment would pick it up: restored on exit
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        with lock:
            try:
                mlflow.set_tracking_uri(self.tracking_uri)
                name = experiment or self.experiment
                exp = mlflow.get_experiment_by_name(name)
                yield exp.experiment_id if exp is not None else mlflow.create_experiment(
                    name, artifact_location=f"{self.artifact_root}/{name}" if self.artifact_root else None)
            finally:
                if previous is None:
                    os.environ.pop("MLFLOW_TRACKING_URI", None)
                else:
                    os.environ["MLFLOW_TRACKING_URI"] = previous

    def log_report(self, experiment: str, run_name: str, params: dict, metrics: dict, artifacts: dict[str, bytes],
                   tags: dict | None = None) -> str:
        """One MLflow run for a report asset: params, metrics (None values left out) and files."""
        import tempfile
        from pathlib import Path

        import mlflow

        with self.session(experiment) as experiment_id, \
                mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run, \
                tempfile.TemporaryDirectory() as tmp:
            mlflow.log_params(params)
            mlflow.log_metrics({k.replace(" ", "_"): float(v) for k, v in metrics.items() if v is not None})
            for name, data in artifacts.items():
                (Path(tmp) / name).write_bytes(data)
                mlflow.log_artifact(str(Path(tmp) / name))
        return run.info.run_id
