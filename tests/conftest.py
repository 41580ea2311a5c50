"""Shared fixtures: the demo-scale look-alike data, generated once per test session."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    from mm_assets.sample_data import generate_sample_data

    root = tmp_path_factory.mktemp("sample_data")
    generate_sample_data(root, scale="demo", seed=0)
    return root


@pytest.fixture(scope="session")
def truth(sample_data) -> dict:
    return json.loads((sample_data / "truth" / "planted_truth.json").read_text())
