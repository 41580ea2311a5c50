"""A home carries its settings: what `mm-curation study` writes to `MM_HOME/settings.json` is what
the resources read there (so `make ui MM_HOME=...` shows the study's graph with the study's
settings); the environment still wins, and a home without settings uses the defaults."""

import json

import pytest

from mm_assets.demo import DEMO_SETTINGS, STUDY_SETTINGS, prepare_home
from resources.settings import training_resource
from resources.training import TrainingResource


def test_the_demo_and_study_home_settings_reach_the_training_resource(tmp_path, monkeypatch):
    monkeypatch.delenv("MM_HOME", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for name in {**STUDY_SETTINGS, **DEMO_SETTINGS}:
        monkeypatch.delenv(name, raising=False)
    prepare_home(tmp_path, STUDY_SETTINGS)
    assert json.loads((tmp_path / "settings.json").read_text()) == STUDY_SETTINGS
    training = training_resource()
    assert training.seeds == [0, 1, 2] and training.checkpoint_fractions == [1.0]
    assert training.budget_tokens == int(STUDY_SETTINGS["MM_TRAIN_BUDGET_TOKENS"])
    assert (training.tower_scenes, training.tower_epochs) == (32_000, 5)      # the study's tower pre-training

    monkeypatch.setenv("MM_TRAIN_SEEDS", "7")                 # the environment wins
    assert training_resource().seeds == [7]
    monkeypatch.delenv("MM_TRAIN_SEEDS")

    prepare_home(tmp_path, DEMO_SETTINGS)                      # the demo: final checkpoints, no tower pre-training
    demo = training_resource()
    assert demo.seeds == TrainingResource().seeds and demo.checkpoint_fractions == [1.0]
    assert demo.tower_scenes == 0 and demo.budget_tokens == TrainingResource().budget_tokens

    prepare_home(tmp_path)                                     # no settings: the defaults
    assert not (tmp_path / "settings.json").exists()
    plain = training_resource()
    assert (plain.tower_scenes, plain.checkpoint_fractions) == (TrainingResource().tower_scenes,
                                                                TrainingResource().checkpoint_fractions)


def test_mlflow_artifacts_go_where_the_store_is(tmp_path, monkeypatch):
    """MLflow's artifacts: `MM_HOME/mlruns` beside the local SQLite store; a tracking server's own
    artifact root with a server (a local path there would leave every run worker's artifacts on
    its own disk); `MM_MLFLOW_ARTIFACTS` (e.g. an s3:// prefix) wins over both."""
    from resources.settings import mlflow_resource

    home = tmp_path.resolve()
    monkeypatch.setenv("MM_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MM_MLFLOW_ARTIFACTS", raising=False)
    local = mlflow_resource()
    assert local.tracking_uri == f"sqlite:///{home / 'mlflow.db'}" and local.artifact_root == (home / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert mlflow_resource().artifact_root == ""
    monkeypatch.setenv("MM_MLFLOW_ARTIFACTS", "s3://bucket/mlruns")
    assert mlflow_resource().artifact_root == "s3://bucket/mlruns"


def test_the_study_trains_the_shipped_recipes_and_its_own_ones_the_demo_only_the_shipped(tmp_path, monkeypatch):
    from mm_assets.demo import study_recipes
    from resources.settings import REPO_ROOT, recipes_resource

    monkeypatch.delenv("MM_RECIPES", raising=False)
    shipped = {p.stem for p in (REPO_ROOT / "recipes").glob("*.yaml")}
    assert {"mmgen", "v2", "domain_weights"}.isdisjoint(shipped)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "stale.yaml").write_text("steps: []\n")
    prepare_home(tmp_path, {**STUDY_SETTINGS, "MM_RECIPES": study_recipes(tmp_path)})
    assert set(recipes_resource().valid()) == shipped | {"mmgen", "v2"}   # the stale file gone
    with pytest.raises(ValueError, match="no extra study recipe \\['domain_weight'\\]; known: \\['domain_weights', 'mmgen_"):
        study_recipes(tmp_path, ("domain_weight",))
    prepare_home(tmp_path, {**STUDY_SETTINGS, "MM_RECIPES": study_recipes(tmp_path, ("domain_weights",))})
    valid = recipes_resource().valid()
    assert set(valid) == shipped | {"mmgen", "v2", "domain_weights"}  # every one valid
    # v1's weights without its steps: what v1's effect owes to re-weighting alone
    assert valid["domain_weights"].domain_weights == valid["v1"].domain_weights
    assert not valid["domain_weights"].steps
    assert [k for k, _ in valid["v2"].steps] == [k for k, _ in valid["v1"].steps] + ["mmgen"]
    prepare_home(tmp_path)
    assert set(recipes_resource().partition_names()) == shipped
    # the home's settings name its recipes relative to it: a moved home keeps its own
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    prepare_home(tmp_path, {**STUDY_SETTINGS, "MM_RECIPES": study_recipes(tmp_path)})
    tmp_path.rename(moved)
    monkeypatch.setenv("MM_HOME", str(moved))
    assert recipes_resource().directory == str(moved / "recipes")
    assert set(recipes_resource().valid()) == shipped | {"mmgen", "v2"}


def test_study_data_is_regenerated_when_the_planted_mix_changes_and_reused_when_not(tmp_path, monkeypatch):
    """`mm-curation study --mix refusal_share=0.5` must not reuse the data of the default mix."""
    import mm_assets.sample_data as sample_data
    from mm_assets.demo import ensure_sample_data
    from mm_assets.sample_data.generate import GENERATOR_VERSION, IMAGE_CONTENT
    from mm_assets.sample_data.scales import resolve_scale

    calls = []

    def fake_generate(root, scale, seed, workers, mix=None):
        calls.append(mix)
        (root / "truth").mkdir(parents=True, exist_ok=True)
        (root / "trusted").mkdir(parents=True, exist_ok=True)
        (root / "trusted" / "mammoth_si.json").write_text("[]")
        (root / "content").mkdir(parents=True, exist_ok=True)
        (root / IMAGE_CONTENT).write_text("")
        (root / "truth" / "planted_truth.json").write_text(json.dumps(
            {"scale": scale, "seed": seed, "generator_version": GENERATOR_VERSION,
             "mix": resolve_scale(scale, mix=mix).mix.as_dict()}))
        return {}

    monkeypatch.setattr(sample_data, "generate_sample_data", fake_generate)
    root = tmp_path / "sample_data"
    for mix in (None, None, {"refusal_share": 0.5}, {"refusal_share": 0.5}, None):
        ensure_sample_data(root, "study", 0, mix)
    assert calls == [None, {"refusal_share": 0.5}, None]
    # data written before the image content existed is written again (the same bytes but that file)
    (root / IMAGE_CONTENT).unlink()
    ensure_sample_data(root, "study", 0, None)
    ensure_sample_data(root, "study", 0, None)
    assert calls == [None, {"refusal_share": 0.5}, None, None]
