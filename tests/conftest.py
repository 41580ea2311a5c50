"""Shared fixtures: the demo-scale look-alike data, generated once per test session."""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tiny tower's dense pre-training at a test's size (a second, not the demo's minute); every
# process the tests start (dagster dev, run workers) inherits it; curation_graph.TEST_TOWER reads it.
os.environ.setdefault("MM_TOWER_SCENES", "40")
os.environ.setdefault("MM_TOWER_EPOCHS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
# About 1.5 passes over the small data's baseline (≈ 128 samples): what the tests train on.
SMALL_BUDGET_TOKENS = 30_000


def pytest_collection_modifyitems(items):
    """Marks the tests of the filled small graph, so that `make test` runs them in a process of
    their own (the graph, minutes to fill, is built once there) beside the rest. Their time limit
    is 30 minutes, a bound for hangs: run alone (without the shared fill tests/run_suite.sh builds
    first) the first one's setup fills the graph, and in the suite they run at a lower priority
    than the end-to-end tests."""
    for item in items:
        if "small_graph" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.small_graph)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(1800))


def _generate_demo_data(root: Path) -> Path:
    from mm_assets.sample_data import generate_sample_data

    generate_sample_data(root, scale="demo", seed=0)
    return root


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    """The demo-scale look-alike data. Read only, so the suite's processes share one."""
    return built_once("sample_data", _generate_demo_data) or _generate_demo_data(tmp_path_factory.mktemp("sample_data"))


@pytest.fixture(scope="session")
def truth(sample_data) -> dict:
    return json.loads((sample_data / "truth" / "planted_truth.json").read_text())


def built_once(name: str, build) -> Path | None:
    """With MM_TEST_SHARED set (tests/run_suite.sh sets it), `name` is built there by the first
    pytest process that asks (`build(path)`) while the others wait for it; None without it."""
    root = os.environ.get("MM_TEST_SHARED")
    if not root:
        return None
    target = Path(root) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target.parent / f"{name}.complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            build(target)
            (target.parent / f"{name}.complete").touch()
    return target


def _generate_small_data(root: Path) -> Path:
    from mm_assets.sample_data import generate_sample_data

    generate_sample_data(root, scale="demo", seed=0, _records_per_domain=16, _eval_items=6)
    return root


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small look-alike data set (16 records per domain, 6 eval items per benchmark), with
    every kind of planted defect and the trusted pool: for tests that run the whole graph.
    Read only, so the suite's processes share one."""
    return built_once("small_data", _generate_small_data) or _generate_small_data(tmp_path_factory.mktemp("small_data"))


def fill_small_graph(home: Path, small_data: Path):
    from curation_graph import SHIPPED_RECIPES, build_graph, small_graph_resources

    g = build_graph(home, small_data, recipes=SHIPPED_RECIPES, **small_graph_resources(home, SMALL_BUDGET_TOKENS))
    rejected = g.fill(eval_sets=True, train=True)
    assert rejected == {}
    assert g.automation_tick() == {}          # the first tick only marks the filled graph as handled
    return g


def build_shared(part: str) -> None:
    """What the suite's processes share, built before they start (tests/run_suite.sh): "data"
    (the two data sets), then "fill" (the filled small graph, for the two small-graph
    processes). Built by the first process that needed it, the fill alone took ten minutes while
    the other processes ran."""
    small = built_once("small_data", _generate_small_data)
    if part == "data":
        built_once("sample_data", _generate_demo_data)
    elif part == "fill":
        built_once("small_graph", lambda home: fill_small_graph(home, small))
    else:
        raise ValueError(f"build_shared: {part!r} is neither 'data' nor 'fill'")


@pytest.fixture(scope="session")
def small_graph(small_data, tmp_path_factory):
    """The whole graph filled on the small data with every shipped recipe, each trained; training
    settings and the sensor's benchmark set sized for tests. Tests that change it restore what
    they change. The suite's two processes of small-graph tests fill it once (the fill is most of
    their time) and each works on its own copy."""
    from curation_graph import open_graph, small_graph_resources

    shared = built_once("small_graph", lambda home: fill_small_graph(home, small_data))
    home = tmp_path_factory.mktemp("small_graph") / "home"
    if shared is None:
        return fill_small_graph(home, small_data)
    # (the copy's new MLflow runs keep the experiments' artifact location, in the shared home)
    shutil.copytree(shared, home)
    g = open_graph(home, small_data, **small_graph_resources(home, SMALL_BUDGET_TOKENS))
    assert g.automation_tick() == {}              # this copy's first tick, as the fill's
    return g


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A tmpfs of `size` (e.g. "1m") mounted at `path` for a full-disk test, unmounted after;
    the test is skipped where mounting is not allowed (it needs root; CI runs as root)."""
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
