"""The Ray cluster that the per-sample steps map their shards over (dagster-ray's `RayResource`).

With no address (the default) nothing connects and every step runs in its run worker, as the
demo does. With `MM_RAY_ADDRESS` set — `127.0.0.1:6379` for a cluster on this machine (the
tests' `ray start --head`), `ray://<head>:10001` for a remote one (the KubeRay head service in
deploy/) — each step that maps over shards connects for the duration of its run, submits one
task per shard with the resources below, and disconnects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import dagster as dg
from dagster_ray import RayResource
from pydantic import Field

from mm_assets.shard_map import RayPlacement


class RayClusterResource(RayResource):
    """An existing Ray cluster by address; empty address: in process, no Ray."""

    address: str = Field(default="", description="Ray address (host:port or ray://host:port); empty: in process")
    num_cpus_per_shard: float = Field(default=1.0, ge=0, description="CPUs each shard task reserves")
    num_gpus_per_shard: float = Field(default=0.0, ge=0, description="GPUs each shard task reserves (GPU steps)")
    memory_mb_per_shard: int = Field(default=0, ge=0, description="memory each shard task reserves; 0: none")
    max_retries: int = Field(default=3, ge=0, description="retries of a shard task whose worker died")
    worker_env: dict[str, str] = Field(default_factory=lambda: {"HF_HUB_OFFLINE": "1"},
                                       description="environment of the shard tasks")

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def host(self) -> str:
        return self.address.removeprefix("ray://").rsplit(":", 1)[0]

    @property
    def ray_address(self) -> str:  # type: ignore[override]
        return self.address

    @property
    def name(self) -> str:
        return f"Ray cluster at {self.address}"

    @property
    def created(self) -> bool:       # an existing cluster: nothing to create, wait for or delete
        return True

    @property
    def ready(self) -> bool:
        return True

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Generator[RayClusterResource, None, None]:
        if not self.enabled:
            yield self
            return
        with super().yield_for_execution(context) as connected:
            yield connected

    def placement(self) -> RayPlacement | None:
        """How shard tasks run on the cluster; None when no cluster is configured."""
        if not self.enabled:
            return None
        return RayPlacement(num_cpus=self.num_cpus_per_shard, num_gpus=self.num_gpus_per_shard,
                            memory_bytes=self.memory_mb_per_shard << 20, max_retries=self.max_retries,
                            env_vars=dict(self.worker_env))
