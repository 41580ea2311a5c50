"""One function call per shard, in this process or as tasks on a Ray cluster.

The per-sample steps (embeddings, perplexity scores) are a map over the raw shards that the
ingest wrote: a shard is named by its content hash in the raw manifest, never by how Ray would
split the data, so a re-run after a failure asks for the same shards. Each call writes its
shard's output atomically and ends by writing a small completion record; a call that finds its
record returns it without computing (`ShardResult.computed` is False), which is what makes a
re-materialization after a killed run compute only the missing shards.

On Ray every shard is one task with the configured resources (CPUs, GPUs, memory). A task
whose worker dies is retried by Ray (`max_retries`); an exception raised by the function itself
is not retried — it is a property of the shard, and the step's error names the shard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class ShardResult:
    shard: str              # the shard's name in the raw manifest
    record: dict            # what the shard's completion record says (its outputs and their hashes)
    computed: bool          # False: the output was already complete and was reused
    seconds: float = 0.0


@dataclass(frozen=True)
class RayPlacement:
    """Where and with what each shard task runs on a Ray cluster the driver is connected to."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_bytes: int = 0           # 0: no memory reservation
    max_retries: int = 3            # retries of a task whose worker process died
    env_vars: dict[str, str] = field(default_factory=dict)

    def task_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                   "max_retries": self.max_retries, "retry_exceptions": False}
        if self.memory_bytes:
            options["memory"] = self.memory_bytes
        if self.env_vars:
            options["runtime_env"] = {"env_vars": dict(self.env_vars)}
        return options


class ShardFailed(RuntimeError):
    """A shard's function raised: names the shard and keeps the original error as the cause."""


def map_shards(fn: Callable[[Any], ShardResult], tasks: Sequence[Any], *, shard_names: Sequence[str],
               ray: RayPlacement | None = None,
               on_result: Callable[[ShardResult], None] | None = None) -> list[ShardResult]:
    """`fn(task)` for every task, results in task order; `on_result` as each one finishes.

    `ray`: run the calls as Ray tasks (the caller has connected to the cluster, e.g. through the
    `ray_cluster` resource); None: one after another in this process. `fn` must be a module-level
    function so Ray workers import it rather than unpickle a closure.
    """
    if len(shard_names) != len(tasks):
        raise ValueError(f"{len(tasks)} tasks but {len(shard_names)} shard names")
    if ray is None:
        results = []
        for name, task in zip(shard_names, tasks):
            try:
                result = fn(task)
            except Exception as exc:
                raise ShardFailed(f"shard {name}: {type(exc).__name__}: {exc}") from exc
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results
    return _map_on_ray(fn, tasks, shard_names, ray, on_result)


def _map_on_ray(fn, tasks, shard_names, placement: RayPlacement, on_result) -> list[ShardResult]:
    import ray

    if not ray.is_initialized():
        raise RuntimeError("map_shards(ray=...) needs a connected Ray driver (ray.init / the ray_cluster resource)")
    remote = ray.remote(fn).options(**placement.task_options())
    refs = [remote.remote(task) for task in tasks]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[ShardResult | None] = [None] * len(refs)
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            try:
                results[i] = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                cause = exc.as_instanceof_cause()
                raise ShardFailed(f"shard {shard_names[i]}: {type(cause).__name__}: {cause}") from cause
            if on_result is not None:
                on_result(results[i])
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return results  # type: ignore[return-value]


def task_device() -> str:
    """Where a shard task runs its model: the GPU Ray gave the task (`num_gpus`), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resumable(out, record_name: str, shard: str, compute: Callable[[], dict]) -> ShardResult:
    """The shard's completion record in storage `out` if it is there (reused), else `compute()`
    (which writes the shard's outputs) and then the record, last: a shard counts as done only
    once its record exists."""
    if out.exists(record_name):
        return ShardResult(shard=shard, record=out.read_json(record_name), computed=False)
    result = timed(shard, compute)
    out.write_json(record_name, result.record)
    return result


def timed(shard: str, compute: Callable[[], dict]) -> ShardResult:
    """A computed `ShardResult`, with the seconds the computation took."""
    started = time.perf_counter()
    record = compute()
    return ShardResult(shard=shard, record=record, computed=True, seconds=time.perf_counter() - started)
