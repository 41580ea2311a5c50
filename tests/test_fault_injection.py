"""Fault injection: each long asset's run process is SIGKILLed at random points, then the asset
is re-materialized. After every kill no reader sees a partial artifact (no pointer to it, and
every file that is visible is complete: byte-equal to the uninterrupted run's); after the
re-materialization the artifacts equal the uninterrupted run's, byte for byte.

Each asset is exercised in a copy of the small graph's home (a session fixture) with the
asset's artifacts and pointers removed, as before its first run; the uninterrupted reference is
run there first. Every run uses one torch thread (float sums differ in their last bits between
thread counts). Timings recorded inside artifacts are left out of the comparison.
Kill points: `MM_FAULT_POINTS` per asset (2 in the suite), drawn from a seeded generator —
either after the k-th file of the asset appears (k up to the number it writes; temporaries
count, so a kill can land mid-write) or at a random moment of its compute.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import torch

from conftest import SMALL_BUDGET_TOKENS

POINTS = int(os.environ.get("MM_FAULT_POINTS", "2"))
FINISHED = "finished before the kill point"
HERE = Path(__file__).resolve().parent
TMP = ".tmp-"
# What may differ between two complete runs: wall-clock timings (the trainer's per-step
# `step_time_s`, the run summary's seconds), hence the checkpoint manifest's hash of
# trainer_state.json, and `*_s`/`*_seconds` timings in info files; the MLflow run id of an
# evaluation record; where a rerun resumed from (a checkpoint, or shards a killed run finished).
VOLATILE_KEYS = {"step_time_s", "tokens_per_s", "seconds", "mlflow_run_id", "resumed_from", "resumed_shards"}


def files_under(root: Path, dirs: list[str]) -> dict[str, bytes]:
    out = {}
    for d in dirs:
        base = root / d
        if base.is_file():
            out[d] = base.read_bytes()
        for p in sorted(base.rglob("*")) if base.is_dir() else []:
            if p.is_file() and not any(part.startswith(TMP) for part in p.relative_to(root).parts):
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def count_files(root: Path, names: list[str], since: float = 0.0) -> int:
    """Files written since `since` (wall clock) under the artifact directories and files
    `names`, temporaries included (a temporary appears before its file: counting it lets a kill
    land mid-write)."""
    def fresh(q: Path) -> bool:
        try:
            return q.is_file() and q.stat().st_mtime >= since
        except FileNotFoundError:       # a temporary renamed meanwhile
            return False

    n = 0
    for name in names:
        p = root / name
        if p.is_dir():
            n += sum(1 for q in p.rglob("*") if fresh(q))
        elif p.parent.is_dir():
            n += sum(1 for q in p.parent.iterdir()
                     if (q.name == p.name or (q.name.startswith(TMP) and q.name.endswith(p.name))) and fresh(q))
    return n


def normalised(name: str, data: bytes):
    """A file's content for comparison: in JSON files, without the volatile keys above."""
    if not name.endswith(".json"):
        return data

    def strip(x, key=""):
        if isinstance(x, dict):
            return {k: strip(v, k) for k, v in x.items()
                    if k not in VOLATILE_KEYS and not k.endswith(("_seconds", "_s"))
                    and not (key == "files" and k == "trainer_state.json")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(json.loads(data))


def differing(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    """Names missing on one side or whose content differs (volatile keys aside)."""
    return [n for n in sorted(set(got) | set(want))
            if n not in got or n not in want or normalised(n, got[n]) != normalised(n, want[n])]


def artifact_dirs(pointer: dict) -> list[str]:
    """Every `root` a pointer names (recursively) — the artifact directories or files it stands for."""
    found = []
    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("root"), str):
                found.append(x["root"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(pointer)
    return found


# (asset id, job, partition as fault_child takes it, pointer files of the job's assets)
TARGETS = [
    ("ingest", "ingest_domain_job", "chart", ["raw_shards/chart", "samples/chart"]),
    ("embeddings", "embeddings_job", "chart", ["embeddings/chart"]),
    ("semdedup_scores", "semdedup_scores_job", "image", ["semdedup_scores/image"]),
    ("curated_dataset", "curated_dataset_job", "domain=chart,recipe=baseline",
     ["curated_dataset/chart__baseline"]),
    ("training_run", "training_job", "baseline", ["training_run/baseline"]),
    ("eval_scores", "eval_job", "benchmark=countbench,checkpoint={checkpoint}",
     ["eval_scores/countbench__{checkpoint}"]),
]


def run_child(home: Path, data: Path, job: str, partition: str, watch: tuple[Path, list[str]],
              kill: tuple[str, float]) -> tuple[str, float]:
    """Start the run process and SIGKILL it at `kill`: ("file", k) once it has written k files,
    ("time", s) s seconds after it is ready to run. Returns what happened and when (seconds
    after ready: the kill, or the end of a run that finished first)."""
    proc = subprocess.Popen([sys.executable, str(HERE / "fault_child.py"), str(home), str(data),
                             str(SMALL_BUDGET_TOKENS), job, partition],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=HERE.parent,
                            env={**os.environ, "MM_HOME": str(home)})
    try:
        assert proc.stdout.readline().strip() == "READY"
        started, wall = time.monotonic(), time.time()
        kind, at = kill
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            # a hang bound: the suite runs this process at a lower priority beside four others
            assert elapsed < 900, f"the run process is stuck (waiting for a pool slot?) at {kill}"
            if (kind == "time" and elapsed >= at) or (kind == "file" and count_files(*watch, since=wall) >= at):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return (f"at {elapsed:.1f} s" if kind == "time" else f"at file {at:.0f} ({elapsed:.1f} s)"), elapsed
            time.sleep(0.002)
        return FINISHED, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("asset, job, partition, pointers", TARGETS, ids=[t[0] for t in TARGETS])
def test_a_killed_run_leaves_nothing_partial_and_the_rerun_equals_an_uninterrupted_one(
        small_graph, small_data, tmp_path, asset, job, partition, pointers):
    from curation_graph import open_graph, small_graph_resources
    from fault_child import partition_key
    from resources.run_launcher import release_dead_runs

    home = tmp_path / "home"
    shutil.copytree(small_graph.home, home, ignore=shutil.ignore_patterns("mlruns"))
    g = open_graph(home, small_data, **small_graph_resources(home, SMALL_BUDGET_TOKENS))
    art, ckpts = home / "artifacts", home / "checkpoints"

    if asset == "eval_scores":              # evaluate one checkpoint here first, for its pointer
        checkpoint = sorted(p.name for p in ckpts.iterdir())[0]
        g.evaluate_checkpoint(checkpoint, benchmarks=["countbench"])
        partition = partition.format(checkpoint=checkpoint)
        pointers = [p.format(checkpoint=checkpoint) for p in pointers]
    pointer_files = [f"dagster_io/{p}.json" for p in pointers]
    dirs_of = {pf: artifact_dirs(json.loads((art / pf).read_text())) for pf in pointer_files}
    dirs = [d for pf in pointer_files for d in dirs_of[pf]]
    checkpoint_dirs = []
    if asset == "training_run":
        run = json.loads((art / pointer_files[0]).read_text())
        checkpoint_dirs = list(run["checkpoints"])

    def remove_outputs():
        for d in dirs + pointer_files:
            p = art / d
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        for d in checkpoint_dirs:
            shutil.rmtree(ckpts / d, ignore_errors=True)

    def run_here():
        """An uninterrupted run in this process, on one torch thread like the run processes
        (float reductions differ in their last bits between thread counts)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            g.run(job, partition_key(partition))
        finally:
            torch.set_num_threads(threads)

    remove_outputs()        # the state before the asset's first run; then the reference run
    run_here()
    reference = files_under(art, dirs + pointer_files)
    reference_ckpt = files_under(ckpts, checkpoint_dirs)
    assert reference and (asset != "training_run" or reference_ckpt)
    remove_outputs()

    def differ(got, want):
        return differing(got, want)

    rng = random.Random(f"{asset}-faults")
    watch_root, watch_dirs = (ckpts, checkpoint_dirs) if asset == "training_run" else (art, dirs + pointer_files)
    n_files = len(reference_ckpt) if asset == "training_run" else len(reference)
    outcomes, horizon, released = [], None, []
    for i in range(POINTS):
        # alternately: after a drawn number of its files (they are written mostly at the end),
        # or at a drawn moment before the first kill point's time (mostly compute)
        kill = ("file", rng.randint(1, n_files - 1)) if i % 2 == 0 or horizon is None \
            else ("time", rng.uniform(0.05, 1.0) * horizon)
        outcome, elapsed = run_child(home, small_data, job, partition, (watch_root, watch_dirs), kill)
        # the killed run is STARTED in the instance and holds its pool slot (the eval pool has two):
        # what the daemon's run monitoring does, done here without a daemon
        released += release_dead_runs(g.instance)
        horizon = elapsed if horizon is None else horizon
        visible = files_under(art, dirs + pointer_files)
        visible_ckpt = files_under(ckpts, checkpoint_dirs)
        assert set(visible) <= set(reference), sorted(set(visible) - set(reference))
        # every file there is whole (equal to the uninterrupted run's) …
        whole = {n: reference[n] for n in visible}
        assert not differ(visible, whole), (outcome, differ(visible, whole))
        # … and an asset whose pointer readers can find is complete
        handed_over = [pf for pf in pointer_files if pf in visible]
        for pf in handed_over:
            mine = [n for n in reference if n == pf or any(n == d or n.startswith(f"{d}/") for d in dirs_of[pf])]
            assert not differ({n: visible.get(n, b"") for n in mine}, {n: reference[n] for n in mine}), (pf, outcome)
        for ck in {name.split("/")[0] for name in visible_ckpt}:
            if f"{ck}/COMPLETE" in visible_ckpt:     # a sealed checkpoint is a complete one
                mine = {n: b for n, b in visible_ckpt.items() if n.startswith(f"{ck}/")}
                theirs = {n: b for n, b in reference_ckpt.items() if n.startswith(f"{ck}/")}
                assert not differ(mine, theirs), (ck, differ(mine, theirs))
        outcomes.append(f"{outcome}{' (after hand-over)' if len(handed_over) == len(pointer_files) else ''}: "
                        f"{len(visible)} files left")
        if outcome == FINISHED or handed_over:
            remove_outputs()                # start the next kill point from scratch again

    assert any(not o.startswith(FINISHED) for o in outcomes), outcomes
    assert not g.instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])), released
    outcomes.append(f"{len(released)} dead runs marked failed")
    run_here()
    assert not differ(files_under(art, dirs + pointer_files), reference), \
        (outcomes, differ(files_under(art, dirs + pointer_files), reference))
    assert not differ(files_under(ckpts, checkpoint_dirs), reference_ckpt), \
        (outcomes, differ(files_under(ckpts, checkpoint_dirs), reference_ckpt))
    # what the killed runs left half-written was swept by the next writer there
    leftovers = [p for root, names in ((art, dirs), (ckpts, checkpoint_dirs)) for d in names
                 if (root / d).is_dir() for p in (root / d).rglob(f"{TMP}*")]
    assert not leftovers, leftovers
    print(f"{asset}: killed {outcomes}")
