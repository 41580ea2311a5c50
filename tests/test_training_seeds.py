"""Training seeds: `training_run[recipe]` trains one run per seed, each named by its seed, all
from the same base model to the same token budget; the seed is in every checkpoint's manifest,
in MLflow and in the lineage. The asset runs through the real job on a few fake curated shards
and a tiny base model (no curation graph: seconds, not minutes)."""

from __future__ import annotations

import json

import dagster as dg
import mlflow
import pytest
from safetensors.torch import load_file

from curation_graph import TEST_TOWER
from mm_assets.checkpoints import verify_checkpoint
from mm_assets.definitions import build_definitions
from mm_assets.lineage import lineage
from mm_assets.local_runner import LocalGraph
from mm_assets.partitions import checkpoint_partitions, recipe_partitions
from mm_assets.recipes.schema import RecipeError, parse_recipe
from mm_assets.storage import Storage
from mm_assets.taxonomy import DOMAINS
from mm_assets.training.assets import first_seed_final
from resources.evaluation import CheckpointStoreResource, MlflowResource
from resources.json_io_manager import pointer_path
from resources.recipes import RecipesResource
from resources.storage import StorageResource
from resources.training import TrainingResource
from shard_files import write_shards
from test_training import WORDS, fake_samples

RECIPE = "seeded"
BUDGET = 3_000          # about 4 passes over the 24 fake samples
FRACTIONS = (0.5, 1.0)
BASE_VERSION = "tiny-base-for-seeds"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """`training_run[seeded]` with `training: {seeds: [0, 1]}`, materialized once."""
    from mm_assets.vlm.tiny_llava import build_tiny_llava
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer

    home = tmp_path_factory.mktemp("seeds")
    art = home / "artifacts"
    st = Storage(str(art))
    samples = fake_samples(24, seed=0)
    texts = [t["value"] for _, f in samples for t in json.loads(f["json"])["conversations"]]
    build_tiny_llava(art / "base_model" / "tiny" / "model", train_bpe_tokenizer(texts + [" ".join(WORDS)] * 4,
                                                                                  vocab_size=512), seed=0)
    st.write_json(pointer_path(dg.AssetKey("base_model"), None),
                  {"uri": str(art / "base_model" / "tiny" / "model"), "root": "base_model/tiny/model",
                   "version": BASE_VERSION, "kind": "tiny"})
    per = len(samples) // len(DOMAINS)          # the curated datasets: a few samples per domain
    for i, domain in enumerate(DOMAINS):
        root = f"curated/{RECIPE}/{domain}/v1"
        write_shards(art / root, samples[i * per:(i + 1) * per], per_shard=per)
        st.write_json(pointer_path(dg.AssetKey("curated_dataset"), f"{domain}|{RECIPE}"),
                      {"root": root, "version": f"{domain}-v1"})
    (home / "recipes").mkdir()
    (home / "recipes" / f"{RECIPE}.yaml").write_text("training: {seeds: [0, 1]}\n")
    defs = build_definitions(
        storage=StorageResource(root=str(art)), recipes=RecipesResource(directory=str(home / "recipes")),
        checkpoints=CheckpointStoreResource(root=str(home / "checkpoints")),
        mlflow=MlflowResource(tracking_uri=f"sqlite:///{home / 'mlflow.db'}", artifact_root=(home / "mlruns").as_uri()),
        # one sample per row: every run ends within half a sample (< 1 %) of the budget
        training=TrainingResource(budget_tokens=BUDGET, checkpoint_fractions=list(FRACTIONS), batch_size=4,
                                  packing=False, lr=3e-3, warmup=2, **TEST_TOWER))
    (home / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
        instance.add_dynamic_partitions(recipe_partitions.name, [RECIPE])
        g = LocalGraph(defs, instance)
        g.run("training_job", RECIPE)
        yield g, home, st


def _output(st: Storage) -> dict:
    return st.read_json(pointer_path(dg.AssetKey("training_run"), RECIPE))


def test_each_seed_is_one_run_at_the_same_budget_from_the_same_base_model(seeded):
    g, home, st = seeded
    out = _output(st)
    runs = out["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    ids = [r["training_run"] for r in runs]
    assert ids[0].startswith(f"{RECIPE}-seed0-") and ids[1].startswith(f"{RECIPE}-seed1-")
    assert ids[0].split("-")[-1] != ids[1].split("-")[-1]           # the seed is in the digest too
    assert out["training_run"] == ids[0] and out["tokens_seen"] == runs[0]["tokens_seen"]
    assert out["checkpoints"] == runs[0]["checkpoints"] + runs[1]["checkpoints"]
    store = Storage(str(home / "checkpoints"))
    for run in runs:
        names = run["checkpoints"]
        assert len(names) == len(FRACTIONS) and all(n.startswith(f"{run['training_run']}-e") for n in names)
        assert run["final"] == names[-1] and first_seed_final(out)["checkpoint"] == runs[0]["final"]
        assert abs(run["tokens_seen"] - BUDGET) <= 0.01 * BUDGET, run
        for name in names:
            man = verify_checkpoint(store, name)
            assert man["seed"] == run["seed"] and man["training_run"] == run["training_run"]
            assert man["base_model_version"] == BASE_VERSION and man["budget_tokens"] == BUDGET
        summary = st.read_json(f"{run['root']}/summary.json")
        assert summary["seed"] == run["seed"] and summary["checkpoints"] == names
        assert summary["tokens_seen"] == run["tokens_seen"] and summary["settings"]["seeds"] == [0, 1]
    # another data order, other weights (the trained ones; the frozen vision tower is shared)
    w0, w1 = (load_file(str(home / "checkpoints" / r["final"] / "model.safetensors")) for r in runs)
    trained = [k for k in w0 if "vision_tower" not in k]
    assert trained and any(not (w0[k] == w1[k]).all() for k in trained)
    assert all((w0[k] == w1[k]).all() for k in w0 if "vision_tower" in k)
    m = g.meta("training_run", RECIPE)
    assert m["seeds"] == [0, 1] and m["training_run"] == ids[0] and [r["training_run"] for r in m["runs"]] == ids
    assert all(i in m["runs_table"] for i in ids)


def test_each_seed_is_an_mlflow_run_tagged_with_its_seed(seeded):
    g, home, st = seeded
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["mm-curation-training"], output_format="list")
    by_seed = {r.data.tags["mm/seed"]: r for r in runs}
    assert len(runs) == 2 and sorted(by_seed) == ["0", "1"]
    for run in _output(st)["runs"]:
        tracked = by_seed[str(run["seed"])]
        assert tracked.data.tags["mm/training_run"] == tracked.info.run_name == run["training_run"]
        assert tracked.data.params["training_seed"] == str(run["seed"])
        assert len(mlflow.MlflowClient().get_metric_history(tracked.info.run_id, "loss")) == run["steps"]


def test_the_lineage_of_a_checkpoint_shows_its_seed(seeded):
    g, home, st = seeded
    run = _output(st)["runs"][1]
    g.instance.add_dynamic_partitions(checkpoint_partitions.name, [run["final"]])
    g.run("checkpoint_job", run["final"])
    text = lineage(g.instance, g.defs, run["final"])
    assert f"'training_run': '{run['training_run']}'" in text and "'seed': 1" in text, text


def test_a_rematerialization_of_finished_runs_does_not_encode_the_data_again(seeded, monkeypatch):
    """Every seed trained to its end: the same output, each run's summary naming its final
    checkpoint as the resume point, and the shards never encoded (minutes at the study's scale)."""
    g, home, st = seeded
    before = _output(st)

    def no_encoding(*args, **kwargs):
        raise AssertionError("the shards were encoded although every seed had finished")

    monkeypatch.setattr("mm_assets.training.trainer.encode_shards", no_encoding)
    g.run("training_job", RECIPE)
    after = _output(st)
    assert after["runs"] == before["runs"] and after["version"] == before["version"]
    for run in after["runs"]:
        assert st.read_json(f"{run['root']}/summary.json")["resumed_from"].endswith(run["final"])


def test_a_rematerialization_resumes_each_seed_and_a_new_seed_keeps_the_others(seeded):
    """(Runs last: it changes the recipe.) Seed 1 resumes from its own final checkpoint, seed 2
    is a new run; the run ids do not depend on which other seeds are listed."""
    g, home, st = seeded
    before = {r["seed"]: r for r in _output(st)["runs"]}
    (home / "recipes" / f"{RECIPE}.yaml").write_text("training: {seeds: [1, 2]}\n")
    g.run("training_job", RECIPE)
    out = _output(st)
    runs = out["runs"]
    assert [r["seed"] for r in runs] == [1, 2] and out["training_run"] == runs[0]["training_run"]
    assert runs[0] == before[1]
    assert st.read_json(f"{runs[0]['root']}/summary.json")["resumed_from"].endswith(before[1]["final"])
    assert runs[1]["training_run"].startswith(f"{RECIPE}-seed2-") and runs[1]["training_run"] not in (
        before[0]["training_run"], before[1]["training_run"])
    assert abs(runs[1]["tokens_seen"] - BUDGET) <= 0.01 * BUDGET


def test_outputs_stored_before_seeds_name_their_last_checkpoint():
    old = {"training_run": "baseline-1234abcd", "checkpoints": ["baseline-1234abcd-e1-s2", "baseline-1234abcd-e2-s4"],
           "tokens_seen": 3000}
    assert first_seed_final(old) == {"checkpoint": "baseline-1234abcd-e2-s4", "tokens_seen": 3000}


@pytest.mark.parametrize("seeds, key, reason", [
    ("[]", "training.seeds", "at least one seed"),
    ("[0, 1, 0]", "training.seeds", "seed 0 is listed twice"),
    ("[-1]", "training.seeds", "seed -1 is not a non-negative integer"),
    ("[4294967296]", "training.seeds", "not a non-negative integer below 2**32"),
    ("3", "training.seeds", "valid list"),
    ("[true]", "training.seeds.0", "valid integer"),
    ("['1']", "training.seeds.0", "valid integer"),
    ("[1.5]", "training.seeds.0", "valid integer"),
])
def test_a_bad_seeds_list_is_a_recipe_error(seeds, key, reason):
    with pytest.raises(RecipeError) as info:
        parse_recipe(f"training: {{seeds: {seeds}}}\n", "r", "r.yaml")
    assert info.value.key == key and reason in info.value.reason, str(info.value)


def test_recipe_and_resource_seeds():
    assert parse_recipe("training: {seeds: [2, 0, 1]}\n", "r").training.seeds == [2, 0, 1]
    assert parse_recipe("training: {budget_tokens: 5000}\n", "r").training.seeds is None   # the resource's
    assert TrainingResource().seeds == [0]
    for bad in ([], [1, 1], [-2]):
        with pytest.raises(Exception, match="seed"):
            TrainingResource(seeds=bad)
