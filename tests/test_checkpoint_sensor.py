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
        assert isinstance(result, dg.SkipReason)
    assert instance.get_dynamic_partitions(checkpoint_partitions.name) == []
