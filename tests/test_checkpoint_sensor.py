"""The checkpoint sensor: only complete checkpoints register, each is requested once, and every
registered checkpoint gets one eval request per benchmark."""

import json

import dagster as dg
import pytest

from mm_assets.checkpoints import MARKER, seal_local_checkpoint
from mm_assets.definitions import build_definitions
from mm_assets.partitions import checkpoint_partitions
from mm_assets.taxonomy import BENCHMARKS
from resources.evaluation import CheckpointStoreResource
from resources.storage import StorageResource


def fake_checkpoint(root, name, step, seal=True):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"step": step}))
    (d / "model.safetensors").write_bytes(bytes(range(256)) * (step + 1))
    if seal:
        seal_local_checkpoint(d, {"training_run": "run-a", "step": step, "epoch": step})
    return d


@pytest.fixture
def setup(tmp_path):
    store = tmp_path / "checkpoints"
    store.mkdir()
    resources = {"checkpoints": CheckpointStoreResource(root=str(store)),
                 "storage": StorageResource(root=str(tmp_path / "artifacts"))}
    defs = build_definitions(**resources)
    with dg.instance_for_test() as instance:
        yield store, defs, instance, resources


def tick(defs, instance, resources, cursor):
    sensor = defs.resolve_sensor_def("checkpoint_sensor")
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=defs)
    return sensor(ctx)


def register(defs, instance, result):
    """What the daemon does with a tick's result: add partitions, run the registration runs."""
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(checkpoint_partitions.name, list(req.partition_keys))
    for r in result.run_requests:
        if r.job_name == "checkpoint_job":
            assert defs.resolve_job_def("checkpoint_job").execute_in_process(
                instance=instance, partition_key=r.partition_key).success


def test_only_complete_checkpoints_register_and_each_is_requested_once(setup):
    store, defs, instance, resources = setup
    fake_checkpoint(store, "step-1", 1)
    fake_checkpoint(store, "step-2", 2, seal=False)          # still being written: no marker
    bad = fake_checkpoint(store, "step-3", 3)
    (bad / "model.safetensors").write_bytes(b"truncated")    # marker, but a file does not verify

    first = tick(defs, instance, resources, None)
    assert [(r.job_name, r.partition_key, r.run_key) for r in first.run_requests] == \
        [("checkpoint_job", "step-1", "checkpoint-step-1")]
    assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [["step-1"]]
    register(defs, instance, first)

    second = tick(defs, instance, resources, first.cursor)
    evals = [(r.job_name, r.partition_key.keys_by_dimension["checkpoint"],
              r.partition_key.keys_by_dimension["benchmark"], r.run_key) for r in second.run_requests]
    assert evals == [("eval_job", "step-1", b, f"eval-step-1-{b}") for b in BENCHMARKS]

    third = tick(defs, instance, resources, second.cursor)   # seen again: nothing new
    assert isinstance(third, dg.SkipReason) or not third.run_requests

    seal_local_checkpoint(store / "step-2", {"training_run": "run-a", "step": 2, "epoch": 2})
    fourth = tick(defs, instance, resources, second.cursor)
    assert [r.partition_key for r in fourth.run_requests] == ["step-2"]
    assert "step-3" not in instance.get_dynamic_partitions(checkpoint_partitions.name)


def test_a_checkpoint_without_its_marker_is_never_registered(setup):
    store, defs, instance, resources = setup
    d = fake_checkpoint(store, "step-9", 9)
    (d / MARKER).unlink()
    cursor = None
    for _ in range(3):
        result = tick(defs, instance, resources, cursor)
        assert not result.run_requests and result.skip_reason is not None
        cursor = result.cursor
    assert instance.get_dynamic_partitions(checkpoint_partitions.name) == []


def test_what_the_instance_holds_counts_whoever_registered_it(setup):
    """A fresh cursor (a restarted daemon, or `make ui` after the in-process demo) registers
    nothing that is registered with the same content, and requests only the evals that are
    missing; a checkpoint whose files changed under the same name is registered again."""
    store, defs, instance, resources = setup
    fake_checkpoint(store, "step-1", 1)
    fake_checkpoint(store, "step-2", 2)
    first = tick(defs, instance, resources, None)
    register(defs, instance, first)
    # what another process did: step-1 evaluated on one benchmark
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "eval_scores", partition=str(dg.MultiPartitionKey({"checkpoint": "step-1", "benchmark": BENCHMARKS[0]}))))

    fresh = tick(defs, instance, resources, None)
    assert not [r for r in fresh.run_requests if r.job_name == "checkpoint_job"]
    evals = sorted((r.partition_key.keys_by_dimension["checkpoint"], r.partition_key.keys_by_dimension["benchmark"])
                   for r in fresh.run_requests)
    assert evals == sorted([("step-1", b) for b in BENCHMARKS[1:]] + [("step-2", b) for b in BENCHMARKS])
    assert not tick(defs, instance, resources, fresh.cursor).run_requests

    (store / "step-2" / "model.safetensors").write_bytes(b"retrained" * 10)     # rewritten and resealed
    seal_local_checkpoint(store / "step-2", {"training_run": "run-a", "step": 2, "epoch": 2})
    again = tick(defs, instance, resources, None)
    assert [(r.job_name, r.partition_key) for r in again.run_requests if r.job_name == "checkpoint_job"] == \
        [("checkpoint_job", "step-2")]
