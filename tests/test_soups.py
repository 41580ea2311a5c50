"""Soups as checkpoints (mm_assets/mixing/soups.py): a sealed manifest of experts, registered and
evaluated through the same checkpoint and eval_scores assets as a trained checkpoint, its
weights merged only for the evaluation."""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest
import torch
from safetensors.torch import load_file, save_file

from mm_assets.checkpoints import MANIFEST, MARKER, checkpoint_version, seal_local_checkpoint, verify_checkpoint
from mm_assets.mixing.soups import SOUP, model_dir, soup_weights, write_soup
from mm_assets.storage import Storage
from mm_assets.vlm.random_checkpoint import write_random_checkpoint, write_sibling_checkpoint

TEXTS = ["How many circles are there?", "What is the title?"] * 50


def _reseal(directory, manifest: dict) -> None:
    (directory / MANIFEST).unlink()
    (directory / MARKER).unlink()
    seal_local_checkpoint(directory, manifest)


def _experts(store_dir, n: int) -> list[str]:
    """n checkpoints of one start model: the same tower, language models apart (as per-domain
    experts trained from one start checkpoint with the tower frozen)."""
    names = [f"expert-{i}" for i in range(n)]
    write_random_checkpoint(store_dir / names[0], TEXTS, seed=0, training_run="run-0", step=10)
    for i, name in enumerate(names[1:], start=1):
        write_sibling_checkpoint(store_dir / names[0], store_dir / name, seed=i, training_run=f"run-{i}")
    return names


def test_a_soup_is_a_sealed_checkpoint_named_by_its_experts_and_weights(tmp_path):
    store = Storage(str(tmp_path))
    experts = _experts(tmp_path, 3)
    name = write_soup(store, experts[:2], label="a+b")
    manifest = verify_checkpoint(store, name)
    assert name.startswith("soup-a+b-") and manifest["experts"] == experts[:2]
    assert SOUP in manifest["files"] and "config.json" in manifest["files"]
    assert not any(f.endswith(".safetensors") or f == "optimizer.pt" for f in manifest["files"])   # no weights stored
    assert write_soup(store, experts[:2], label="a+b") == name                            # found, not rewritten
    assert write_soup(store, experts[:2], weights=[0.7, 0.3], label="a+b") != name
    assert write_soup(store, experts[1:], label="a+b") != name
    with pytest.raises(ValueError, match="appears twice"):
        write_soup(store, [experts[0], experts[0]])


def test_the_merged_weights_keep_every_tensor_and_copy_the_tower(tmp_path):
    store = Storage(str(tmp_path))
    experts = _experts(tmp_path, 3)
    name = write_soup(store, experts)
    states = [load_file(str(tmp_path / e / "model.safetensors")) for e in experts]
    with model_dir(store, name) as path:
        merged = load_file(os.path.join(path, "model.safetensors"))
        from mm_assets.vlm.tiny_llava import load_llava
        model, _ = load_llava(path)                     # the back ends' loader reads it as a checkpoint
    assert set(merged) == set(states[0])
    tower = [k for k in merged if "vision_tower." in k]
    assert tower and all(torch.equal(merged[k], states[0][k]) for k in tower)
    lm = next(k for k in merged if k.endswith("embed_tokens.weight"))
    assert torch.allclose(merged[lm], torch.stack([s[lm] for s in states]).double().mean(0).float())
    assert torch.equal(dict(model.named_parameters())[next(n for n, _ in model.named_parameters()
                                                           if n.endswith("embed_tokens.weight"))], merged[lm])
    assert not os.path.exists(path)                     # the merged weights lived for the evaluation only


def test_a_soup_whose_expert_changed_is_refused_by_name(tmp_path):
    store = Storage(str(tmp_path))
    experts = _experts(tmp_path, 2)
    name = write_soup(store, experts)
    spec = json.loads((tmp_path / name / SOUP).read_text())
    state = load_file(str(tmp_path / experts[1] / "model.safetensors"))
    key = next(k for k in state if not k.startswith("model.vision_tower") and state[k].is_floating_point())
    state[key] = state[key] + 1
    save_file(state, str(tmp_path / experts[1] / "model.safetensors"), metadata={"format": "pt"})
    _reseal(tmp_path / experts[1], json.loads((tmp_path / experts[1] / MANIFEST).read_text()))
    with pytest.raises(ValueError, match=f"expert {experts[1]} has changed since the soup was written"):
        soup_weights(store, spec)


def test_experts_with_different_towers_cannot_be_souped(tmp_path):
    store = Storage(str(tmp_path))
    write_random_checkpoint(tmp_path / "x", TEXTS, seed=0)
    write_random_checkpoint(tmp_path / "y", TEXTS, seed=1)
    name = write_soup(store, ["x", "y"])
    with pytest.raises(ValueError, match=r"expert 1: tensor .*vision_tower.* is frozen"):
        with model_dir(store, name):
            pass


@pytest.fixture(scope="module")
def graph(sample_data, tmp_path_factory):
    """An instance with the countbench eval set, three experts in its checkpoint store."""
    from mm_assets.definitions import build_definitions
    from mm_assets.local_runner import LocalGraph

    home = tmp_path_factory.mktemp("soups") / "home"
    store_dir = home / "checkpoints"
    store_dir.mkdir(parents=True)
    experts = _experts(store_dir, 3)
    env = {"MM_HOME": str(home), "MM_SAMPLE_DATA": str(sample_data), "MM_EVAL_MAX_ITEMS": "8",
           "MM_EVAL_BATCH_SIZE": "8", "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        (home / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
            g = LocalGraph(build_definitions(), instance)
            g.run("source_job")
            g.run("eval_sets_job", "countbench")
            yield g, Storage(str(store_dir)), experts
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _evaluate(g, name: str) -> dict:
    from mm_assets.partitions import checkpoint_partitions

    g.instance.add_dynamic_partitions(checkpoint_partitions.name, [name])
    g.run("checkpoint_job", name)
    g.run("eval_job", dg.MultiPartitionKey({"checkpoint": name, "benchmark": "countbench"}))
    return g.meta("eval_scores", dg.MultiPartitionKey({"checkpoint": name, "benchmark": "countbench"}))


def test_a_soup_is_registered_and_evaluated_through_the_eval_assets(graph):
    from mm_assets.lineage import lineage
    from mm_assets.partitions import checkpoint_partitions

    g, store, experts = graph
    name = write_soup(store, experts[:2], weights=[0.75, 0.25], label="two")     # not one of the sweep's
    g.instance.add_dynamic_partitions(checkpoint_partitions.name, [experts[0]])
    g.run("checkpoint_job", experts[0])       # the other expert is not registered
    scores = _evaluate(g, name)
    ck = g.meta("checkpoint", name)
    tree = lineage(g.instance, g.defs, f"eval_scores[{name}/countbench]")
    versions = [checkpoint_version(verify_checkpoint(store, e)) for e in experts[:2]]
    assert ck["lineage"]["soup"]["experts"] == [{"name": e, "version": v} for e, v in zip(experts, versions)]
    assert scores["n"] == 8 and 0 <= scores["score"] <= 1 and scores["generated_items"] == 8
    assert not any(f.endswith(".safetensors") for f in os.listdir(store.uri(name)))
    # lineage: eval table -> soup -> its experts (a registered one with its version, the other missing)
    lines = tree.splitlines()
    assert any(f"checkpoint[{name}]" in line for line in lines), tree
    assert any(f"checkpoint[{experts[0]}]  data version {versions[0]}" in line for line in lines), tree
    assert any(f"checkpoint[{experts[1]}]  (never materialized)" in line for line in lines), tree


def test_the_gray_code_sweep_stores_what_each_soups_own_evaluation_would(graph):
    from mm_assets.evaluation.backends.hf import HFBackend
    from mm_assets.evaluation.benchmarks import get as get_benchmark
    from mm_assets.evaluation.runner import evaluate
    from mm_assets.mixing.sweep import EvalTarget, sweep_soups, write_subset_soups
    from resources.json_io_manager import read_pointers

    g, store, experts = graph
    soups = write_subset_soups(store, dict(zip("abc", experts)))
    assert len(soups) == 7 and soups[frozenset("ab")].startswith("soup-a+b-")
    st = g.defs.resources["storage"].get()
    pointer = read_pointers(st, "eval_sets", ["countbench"])["countbench"]
    items = st.read_parquet(pointer["root"]).head(8)
    target = EvalTarget(get_benchmark("countbench"), items, pointer["version"], 8)
    counts = sweep_soups(store, st, list(soups.values())[::-1], [target], batch_size=8)
    # every soup one expert away from the one before, whatever order they were given in
    seconds = {k: counts.pop(k) for k in ("seconds_merging", "seconds_evaluating")}
    assert counts == {"soups": 7, "evaluations_stored": 7, "evaluations_found": 0, "experts_read": 7}
    assert 0 < seconds["seconds_merging"] and 0 < seconds["seconds_evaluating"]
    assert sweep_soups(store, st, list(soups.values()), [target])["evaluations_found"] == 7     # resumable
    # the soup's own evaluation (merged into a directory, loaded from it) finds the stored predictions...
    name = soups[frozenset("ac")]
    scores = _evaluate(g, name)
    assert scores["reused"] and scores["generated_items"] == 0
    stored = Storage(scores["uri"]).read_parquet("predictions.parquet")
    # ...and generating them that way gives the same predictions
    with model_dir(store, name) as path:
        with HFBackend(path, batch_size=8) as backend:
            fresh = evaluate(backend, target.bench, items, batch_size=8)
    assert fresh.equals(stored)


def test_the_soup_command_writes_a_soup_or_names_what_is_wrong(tmp_path):
    import subprocess
    import sys

    experts = _experts(tmp_path, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MM_", "DAGSTER_"))}
    env.update(MM_CHECKPOINTS=str(tmp_path), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "mm_assets.cli", "soup", *experts, "--label", "pair"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    name = done.stdout.split(":")[0]
    assert name.startswith("soup-pair-") and verify_checkpoint(Storage(str(tmp_path)), name)["experts"] == experts
    bad = subprocess.run(cmd[:4] + ["missing-checkpoint"], env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "missing-checkpoint" in bad.stderr and "COMPLETE" in bad.stderr

    # --export: the same soup (found, not rewritten), its merged weights as a standalone model
    out = tmp_path / "exported"
    done = subprocess.run(cmd + ["--export", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(":")[0] == name and "standalone" in done.stdout
    from mm_assets.vlm.tiny_llava import load_llava
    load_llava(str(out))                                # loads as a model of its own
    merged = load_file(str(out / "model.safetensors"))
    store = Storage(str(tmp_path))
    assert [x["name"] for x in json.loads((out / "merged_from.json").read_text())["experts"]] == experts
    expected = soup_weights(store, json.loads((tmp_path / name / SOUP).read_text()))
    assert set(merged) == set(expected) and all(torch.equal(merged[k], expected[k]) for k in expected)
    assert not (out / MANIFEST).exists() and not (out / SOUP).exists()
    again = subprocess.run(cmd + ["--export", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_the_soups_command_writes_every_subset_or_names_what_is_wrong(tmp_path):
    import subprocess
    import sys

    experts = _experts(tmp_path, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MM_", "DAGSTER_"))}
    env.update(MM_CHECKPOINTS=str(tmp_path), MM_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "mm_assets.cli", "soups", "--expert", f"x={experts[0]}", "--expert", f"y={experts[1]}"]
    done = subprocess.run(cmd + ["--no-sweep"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.glob("soup-*")) == ["soup-x", "soup-x+y", "soup-y"]
    # sweeping needs the eval sets: without them the command says which to materialize
    swept = subprocess.run(cmd + ["--benchmarks", "countbench"], env=env, capture_output=True, text=True, timeout=600)
    assert swept.returncode == 2 and "eval_sets is not materialized" in swept.stderr, swept.stderr


def test_the_mixing_table_collects_every_evaluated_soup(graph):
    """The seven soups of three experts registered and evaluated (their stored sweep predictions
    reused), then `mixing_table`: a row per subset with its eval score, the best mixture, each
    expert's gain, and the searches replayed against the complete table."""
    import polars as pl

    from mm_assets.evaluation.benchmarks import get as get_benchmark
    from mm_assets.mixing.sweep import EvalTarget, sweep_soups, write_subset_soups
    from resources.json_io_manager import read_pointers

    g, store, experts = graph
    soups = write_subset_soups(store, dict(zip("abc", experts)))
    st = g.defs.resources["storage"].get()
    pointer = read_pointers(st, "eval_sets", ["countbench"])["countbench"]
    target = EvalTarget(get_benchmark("countbench"), st.read_parquet(pointer["root"]).head(8), pointer["version"], 8)
    sweep_soups(store, st, list(soups.values()), [target], batch_size=8)
    scores = {subset: _evaluate(g, name)["score"] for subset, name in soups.items()}
    g.run("mixing_table_job")
    meta = g.meta("mixing_table")
    assert meta["soups"] == 7
    root = Storage(meta["uri"])
    table = root.read_parquet("subsets.parquet")
    assert table.height == 7 and set(table.columns) == {"label", "experts", "size", "countbench", "average"}
    for row in table.iter_rows(named=True):
        subset = frozenset(row["label"].split("+"))
        assert row["countbench"] == pytest.approx(scores[subset]) == pytest.approx(row["average"])
    best = root.read_parquet("best.parquet").filter(pl.col("benchmark") == "average").row(0, named=True)
    assert best["score"] == pytest.approx(max(scores.values()))
    searches = root.read_parquet("searches.parquet")
    assert searches.filter(pl.col("search") == "exhaustive")["evaluations"].to_list() == [7]
    assert (searches["below_exhaustive_best"] >= 0).all()
    gains = root.read_parquet("marginal_contributions.parquet")
    assert sorted(gains.filter(pl.col("benchmark") == "average")["expert"].to_list()) == ["a", "b", "c"]
    assert root.read_bytes("mixing.png")[:4] == b"\x89PNG"


def test_a_search_evaluates_only_the_soups_it_visits_and_weighted_soups_reuse_like_any(graph):
    """Greedy soup and beam search over three experts write and evaluate only the soups they
    visit (each once, whatever both searches ask); Dirichlet-weighted soups are evaluated in
    memory and stored where their own eval_scores runs find them; a search run again generates
    nothing."""
    from mm_assets.evaluation.benchmarks import get as get_benchmark
    from mm_assets.mixing.sweep import EvalTarget, search_soups
    from resources.json_io_manager import read_pointers

    g, store, experts = graph
    st = g.defs.resources["storage"].get()
    pointer = read_pointers(st, "eval_sets", ["countbench"])["countbench"]
    target = EvalTarget(get_benchmark("countbench"), st.read_parquet(pointer["root"]).head(8), pointer["version"], 8)
    labelled = dict(zip("abc", experts))
    evaluated = []
    greedy, names = search_soups(store, st, labelled, [target], "greedy", batch_size=8,
                                 progress=lambda soup, score: evaluated.append(soup))
    assert greedy.evaluations == len(evaluated) == len(set(evaluated)) <= 5
    assert names[frozenset("a")].startswith("soup-a-") and names[greedy.best] in evaluated
    assert greedy.score == max(c[1] for c in greedy.curve)
    beam, _ = search_soups(store, st, labelled, [target], "beam", width=1, batch_size=8)
    assert beam.evaluations <= 3 + 2 + 1

    weighted, wnames = search_soups(store, st, labelled, [target], "dirichlet", budget=3, seed=4, batch_size=8)
    assert weighted.evaluations == 3 and len(set(wnames.values())) == 3
    spec = json.loads(store.read_bytes(f"{wnames[weighted.curve[1][2]]}/soup.json"))
    assert spec["weights"] == pytest.approx(list(weighted.curve[1][2]), abs=1e-6)
    name = wnames[weighted.curve[2][2]]
    scores = _evaluate(g, name)                      # its own eval_scores run reuses the search's evaluation
    assert scores["reused"] and scores["generated_items"] == 0
    assert scores["score"] == pytest.approx(weighted.scores[weighted.curve[2][2]])
    again, _ = search_soups(store, st, labelled, [target], "dirichlet", budget=3, seed=4, batch_size=8,
                            device="no-such-device")      # every evaluation stored: no model is loaded
    assert again.curve == weighted.curve
    with pytest.raises(ValueError, match="needs a budget"):
        search_soups(store, st, labelled, [target], "dirichlet")


def test_the_soups_command_searches_and_records_the_curve(graph, capsys):
    from mm_assets.cli import main

    g, store, experts = graph
    args = ["soups", "--expert", f"a={experts[0]}", "--expert", f"b={experts[1]}", "--benchmarks", "countbench"]
    assert main(args + ["--search", "beam", "--width", "1"]) == 0
    out = capsys.readouterr().out
    assert "beam search (width 1): best soup-" in out and "soups evaluated; curve in" in out
    record = json.loads(open(out.rsplit("curve in ", 1)[1].split()[0].removeprefix("file://")).read())
    assert record["benchmarks"] == ["countbench"] and record["evaluations"] == len(record["curve"]) <= 3
    assert record["best"] in [c["soup"] for c in record["curve"]]
    assert main(args + ["--search", "dirichlet"]) == 2 and "needs a budget" in capsys.readouterr().err
