"""The code location loads, as `dagster dev` and CI would load it."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parent.parent


def test_dagster_definitions_validate():
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(dagster), "definitions", "validate", "-m", "mm_assets.definitions"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_loading_the_code_location_imports_no_model_library():
    """Every run worker loads the code location before it runs: a run that never touches a model
    (a curated dataset, a checkpoint's registration, the leaderboard) should not pay for torch's
    import (≈ 3 core-s on a 2-core machine, some 300 MB)."""
    code = ("import sys; import mm_assets.definitions; "
            "print(sorted(m for m in ('torch', 'transformers', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_graph_shape():
    from mm_assets.definitions import defs
    from mm_assets.taxonomy import BENCHMARKS, DOMAINS

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"source", "raw_shards", "samples", "quarantine", "eval_sets"} <= keys
    assert graph.get(dg.AssetKey("raw_shards")).partitions_def.get_partition_keys() == list(DOMAINS)
    assert graph.get(dg.AssetKey("eval_sets")).partitions_def.get_partition_keys() == list(BENCHMARKS)
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("samples")).parent_keys} == {"raw_shards"}
    for job in ("source_job", "ingest_domain_job", "quarantine_job", "eval_sets_job"):
        defs.resolve_job_def(job)


def test_curation_and_evaluation_wiring():
    from mm_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    parents = {k: {p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(k)).parent_keys}
               for k in ("semdedup_scores", "semdedup_mask", "curated_dataset", "eval_scores", "perplexity_scores",
                         "perplexity_decisions", "eval_neighbours", "mining_decisions", "training_run")}
    assert parents["semdedup_scores"] == {"embeddings", "recipe/semdedup_clustering"}
    assert parents["semdedup_mask"] == {"semdedup_scores", "samples", "recipe/semdedup_threshold",
                                        "recipe/semdedup_clustering"}
    assert parents["curated_dataset"] == {"raw_shards", "samples", "semdedup_mask", "perplexity_decisions",
                                          "relevance_decisions", "rephrase_decisions", "mining_decisions",
                                          "decontamination_decisions", "length_decisions", "oracle_decisions",
                                          "mmgen_decisions", "recipe/plan"}
    # expensive scores read only the section that changes them; decisions read their own
    assert parents["perplexity_scores"] == {"raw_shards", "reference_model", "recipe/perplexity_scoring"}
    assert parents["perplexity_decisions"] == {"perplexity_scores", "samples", "recipe/perplexity_selection"}
    assert parents["eval_neighbours"] == {"eval_embeddings", "embeddings", "question_embeddings",
                                          "recipe/mining_neighbours"}
    assert parents["mining_decisions"] == {"eval_neighbours", "samples", "recipe/mining"}
    assert parents["training_run"] == {"curated_dataset", "base_model", "recipe/training"}
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("base_model")).parent_keys} == {"raw_shards", "embedder"}
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("leaderboard")).parent_keys} == {"eval_scores",
                                                                                              "training_run"}
    assert parents["eval_scores"] == {"checkpoint", "eval_sets"}
    # the eval step declares the pool whose limit dagster.yaml sets (default 2)
    assert graph.get(dg.AssetKey("eval_scores")).pools == {"eval_checkpoint_load"}
    for name in ("recipe_sensor", "curation_automation"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def untargeted_automated_assets(defs: dg.Definitions) -> set[str]:
    """Assets with an automation condition that no RUNNING automation sensor targets: Dagster
    hands them to its default automation sensor, which starts STOPPED (under `make ui` they
    would never run)."""
    graph = defs.resolve_asset_graph()
    automated = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition is not None}
    targeted = set()
    for sensor in defs.get_repository_def().sensor_defs:
        if isinstance(sensor, dg.AutomationConditionSensorDefinition) and \
                sensor.default_status == dg.DefaultSensorStatus.RUNNING:
            targeted |= sensor.asset_selection.resolve(graph)
    return {k.to_user_string() for k in automated - targeted}


def test_every_automated_asset_is_targeted_by_a_running_automation_sensor():
    from mm_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    automated = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    assert {"curated_dataset", "training_run", "leaderboard", "base_model", "perplexity_decisions",
            "relevance_decisions", "rephrase_decisions", "mining_decisions", "decontamination_decisions",
            "semdedup_mask", "perplexity_scores", "relevance_scores", "eval_neighbours"} <= automated
    assert untargeted_automated_assets(defs) == set()
    assert not [s.name for s in defs.get_repository_def().sensor_defs if s.name.startswith("default_automation")]


def test_the_coverage_check_sees_an_untargeted_asset():
    @dg.asset
    def parent():
        return 1

    @dg.asset(automation_condition=dg.AutomationCondition.eager(), deps=[parent])
    def forgotten():
        return 2

    sensor = dg.AutomationConditionSensorDefinition("only_parent", target=dg.AssetSelection.assets(parent),
                                                    default_status=dg.DefaultSensorStatus.RUNNING)
    assert untargeted_automated_assets(dg.Definitions(assets=[parent, forgotten], sensors=[sensor])) == {"forgotten"}


def test_jobs_and_the_runner_derive_from_the_step_registry():
    """Every registered step has its decisions asset in the step job and as an input of the
    curated dataset, and a job for each of its score assets."""
    from mm_assets.definitions import defs
    from mm_assets.steps import STEPS

    graph = defs.resolve_asset_graph()
    curated_parents = {p.to_user_string() for p in graph.get(dg.AssetKey("curated_dataset")).parent_keys}
    step_job = defs.resolve_job_def("step_decisions_job")
    in_step_job = {k.to_user_string() for k in step_job.asset_layer.selected_asset_keys}
    for step in STEPS:
        assert step.decisions_asset in curated_parents and step.decisions_asset in in_step_job
        for asset in step.score_assets:
            assert {k.to_user_string() for k in defs.resolve_job_def(f"{asset}_job").asset_layer.selected_asset_keys} \
                == {asset}
        for section in step.decided_by:
            assert f"recipe/{section}" in {p.to_user_string()
                                           for p in graph.get(dg.AssetKey(step.decisions_asset)).parent_keys}


def test_the_readme_shows_the_length_step_as_it_is():
    """The README's worked example of adding a step is the shipped module, verbatim."""
    readme = (REPO / "README.md").read_text()
    assert (REPO / "mm_assets" / "length" / "step.py").read_text() in readme
    assert '"mm_assets.length.step",' in readme and '"mm_assets.length.step",' in \
        (REPO / "mm_assets" / "steps.py").read_text()
