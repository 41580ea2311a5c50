"""`mm-curation demo` and `mm-curation study`: generate the look-alike data and materialize the
graph into a persistent Dagster instance, so `make ui` shows every materialization.

The study is the demo's graph at the `study` scale with the study's settings (three training
seeds per recipe, eval sets of 500 items, checkpoints at half and all of the budget), ending in
the ablation report; the settings are written to the home's `settings.json`, so the UI opened
on that home shows the same graph with the same settings.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from mm_assets import progress
from resources.settings import REPO_ROOT

# What the demo changes from the defaults, to stay within its 10 minutes on 2 cores (README,
# "What the demo shows"): only final checkpoints are evaluated (the half-budget ones were 54 of
# the 114 runs of its eval stage), and the base model's tower is not pre-trained (at the default
# 4 000 scenes x 6 epochs it reached held-out class accuracy 0.10 and held one of the two workers
# for two minutes while the curation stages waited on the other). Both cost the demo's scores,
# not its curation: the curation tables are the same.
DEMO_SETTINGS = {"MM_TRAIN_CHECKPOINTS": "1", "MM_TOWER_SCENES": "0"}

# What the study changes from the defaults (environment-variable names, see resources/settings.py).
# The budget is what 27 runs (9 recipes x 3 seeds) afford in about half of the hour on 2 cores
# (the study's own recipes, `recipes/study/`, make it 33 runs); only final checkpoints are
# evaluated (the evals of 34 checkpoints x 2 500 items are the other big cost). The tower's
# pre-training runs beside the curation stages on one thread and everything after waits for it,
# so it is sized to end with them: 5 epochs over 32 000 scenes (held-out class accuracy 0.28;
# 48 000 x 6 reached 0.56 and kept the rest of the study waiting 8 minutes with one core idle;
# baseline's scores did not drop with the smaller tower: README, "The curation study").
STUDY_SETTINGS = {"MM_TRAIN_SEEDS": "0,1,2", "MM_TRAIN_CHECKPOINTS": "1", "MM_TRAIN_BUDGET_TOKENS": "1000000",
                  "MM_TOWER_SCENES": "32000", "MM_TOWER_EPOCHS": "5"}


def prepare_home(home: Path, settings: dict[str, str] | None = None) -> Path:
    """Point MM_HOME and DAGSTER_HOME at the home's directories; install dagster.yaml; write the
    home's settings (none: remove stale ones)."""
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    path = home / "settings.json"
    if settings:
        path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    else:
        path.unlink(missing_ok=True)
    os.environ["MM_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def ensure_sample_data(root: Path, scale: str, seed: int, mix: dict | None = None) -> None:
    """Generate the look-alike data unless `root` holds the same scale, seed, planted mix (the
    scale's, with `mix`'s fields changed) and generator version."""
    from mm_assets.sample_data import generate_sample_data
    from mm_assets.sample_data.generate import GENERATOR_VERSION, IMAGE_CONTENT
    from mm_assets.sample_data.scales import resolve_scale

    truth = root / "truth" / "planted_truth.json"
    # (data written before the image content existed is written again: the same bytes, so
    # nothing made from it is redone)
    if truth.exists() and (root / "trusted" / "mammoth_si.json").exists() and (root / IMAGE_CONTENT).exists():
        t = json.loads(truth.read_text())
        wanted = {"scale": scale, "seed": seed, "generator_version": GENERATOR_VERSION,
                  "mix": resolve_scale(scale, mix=mix).mix.as_dict()}
        if all(t.get(k) == v for k, v in wanted.items()):
            progress.note(f"sample data: reusing {root} (scale={scale}, seed={seed})")
            return
        shutil.rmtree(root)
    started = time.perf_counter()
    summary = generate_sample_data(root, scale=scale, seed=seed, workers=2, mix=mix)
    progress.note(f"sample data: generated {root} in {time.perf_counter() - started:.1f}s "
                  f"({summary.get('records', '?')} records)")


def run_demo(home: Path, scale: str = "demo", seed: int = 0) -> dict:
    graph, runnable, rejected = materialize(home, scale, seed, DEMO_SETTINGS)
    from mm_assets.steps import recipe_label
    labels = {name: recipe_label(r) for name, r in graph.defs.resources["recipes"].valid().items()}
    summary = _summarise(graph.instance, runnable, labels)
    summary["ablation"] = ablation_rows(graph.defs)
    summary["recipes_rejected"] = rejected
    summary["seconds"] = {k: round(v, 2) for k, v in graph.seconds.items()}
    return summary


def run_study(home: Path, seed: int = 0, extra: tuple[str, ...] = (), mix: dict | None = None) -> dict:
    """The curation study: every recipe over three training seeds at the study scale, then the
    ablation report. Returns the report's tables and where the time went. `extra`: recipes of
    `recipes/study/extra/` to train as well (by name); `mix`: planted-mix fields to change."""
    graph, _, rejected = materialize(home, "study", seed,
                                     {**STUDY_SETTINGS, "MM_RECIPES": study_recipes(home, extra)}, mix)
    m = graph.meta("ablation_report")
    rows = ablation_rows(graph.defs)
    stages = {"sample data": graph.seconds.get("sample_data", 0.0), "curation and training": graph.seconds["fill"],
              "checkpoint evals": graph.seconds["evals"], "leaderboard and report": graph.seconds["report"]}
    return {"recipes": m["recipes"], "mean_score": m["mean_score"], "delta_points": m["delta_points"],
            "gap_recovered_percent": m["gap_recovered_percent"], "contamination": m.get("contamination"),
            "removals_by_defect_kind": m.get("removals_by_defect_kind"), "report": m["uri"], "ablation": rows,
            "mmgen_subgroups": m.get("mmgen_subgroups"),
            "mmgen_targeted_vs_untargeted": m.get("mmgen_targeted_vs_untargeted"),
            "mmgen_targeted_minus_untargeted": m.get("mmgen_targeted_minus_untargeted"),
            "recipes_rejected": rejected, "seconds": {k: round(v, 1) for k, v in stages.items()}}


def study_recipes(home: Path, extra: tuple[str, ...] = ()) -> str:
    """The study's recipe directory, `<home>/recipes`: every shipped recipe (`recipes/*.yaml`),
    the ones only the study trains (`recipes/study/*.yaml`: MM-GEN alone, v2 = v1 + MM-GEN) and
    the `extra` ones asked for by name (`recipes/study/extra/`, e.g. `domain_weights`: v1's
    domain weights alone; measured once, left out of the hour's budget), copied afresh so the
    study always compares the repository's recipes. Returns the directory as the home's
    settings name it: relative to the home, so a moved or copied home keeps its own recipes."""
    extra_dir = REPO_ROOT / "recipes" / "study" / "extra"
    missing = [name for name in extra if not (extra_dir / f"{name}.yaml").exists()]
    if missing:
        raise ValueError(f"no extra study recipe {missing}; known: "
                         f"{sorted(p.stem for p in extra_dir.glob('*.yaml'))}")
    target = home.resolve() / "recipes"
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.yaml"):
        stale.unlink()
    shipped = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
    for path in [*shipped, *sorted((REPO_ROOT / "recipes" / "study").glob("*.yaml")),
                 *(extra_dir / f"{name}.yaml" for name in extra)]:
        shutil.copyfile(path, target / path.name)
    return target.name


def materialize(home: Path, scale: str, seed: int, settings: dict[str, str] | None = None,
                mix: dict | None = None):
    """Generate (or reuse) the data and materialize everything, as the daemon would: every recipe
    trained, every checkpoint evaluated, the leaderboard and the ablation report."""
    home = home.resolve()
    prepare_home(home, settings)
    from resources.settings import sample_data_dir
    started = time.perf_counter()
    with progress.stage(f"sample data ({scale} scale)"):
        ensure_sample_data(sample_data_dir(), scale, seed, mix)
    generated = time.perf_counter() - started

    import dagster as dg

    from mm_assets.definitions import defs
    from mm_assets.local_runner import LocalGraph

    graph = LocalGraph(defs, dg.DagsterInstance.get())
    # training runs and evals in two worker processes, as the daemon runs them (pool limit 2)
    graph.start_workers(2)
    try:
        # every ablation, trained from the same base model to the same token budget
        rejected = graph.fill(train=True)
        runnable = [r for r in defs.resources["recipes"].partition_names() if r not in rejected]
        _register_base_model(defs)
        # what the daemon does: the checkpoint sensor registers every complete checkpoint in the
        # store (the untrained base model and each budget fraction of each run), requests its evals
        started = time.perf_counter()
        with progress.stage("checkpoint evals (sensor)", unit="runs") as stage:
            while graph.sensor_tick("checkpoint_sensor", done=stage.advance):
                pass
        graph.seconds["evals"] = time.perf_counter() - started
    finally:
        graph.stop_workers()
    started = time.perf_counter()
    graph.run_stage("leaderboard and ablation report", [("leaderboard_job", None), ("ablation_report_job", None)])
    graph.seconds["report"] = time.perf_counter() - started
    graph.seconds["sample_data"] = generated
    return graph, runnable, rejected


def ablation_rows(defs) -> list[dict]:
    """The ablation report's table (recipe x benchmark: mean, paired delta and gap recovered
    with their intervals), or none while it waits for baseline's evals."""
    st = defs.resources["storage"].get()
    pointer = st.read_json("dagster_io/ablation_report.json") if st.exists("dagster_io/ablation_report.json") else {}
    if not pointer.get("root") or not st.exists(f"{pointer['root']}/ablation.parquet"):
        return []
    return st.read_parquet(f"{pointer['root']}/ablation.parquet").drop("seeds", "seed_means").to_dicts()


def _register_base_model(defs) -> str | None:
    """The untrained tiny base model every recipe starts from, copied into the checkpoint store:
    the chance-level row of the leaderboard (step 0), registered by the sensor like any checkpoint."""
    from mm_assets.checkpoints import upload_sealed
    from mm_assets.storage import local_dir

    st = defs.resources["storage"].get()
    pointer = st.read_json("dagster_io/base_model.json")
    if pointer["kind"] != "tiny":
        return None             # an outside base model is the user's to register
    name = f"base-{pointer['version'][:12]}"
    store = defs.resources["checkpoints"].get()
    if not store.exists(f"{name}/COMPLETE"):
        with local_dir(st, pointer["root"]) as d:
            upload_sealed(d, store.child(name))
    return name


def _score(m: dict) -> str:
    return f"{m['metric']} {m['score']:.3f} [{m['ci95_low']:.3f}, {m['ci95_high']:.3f}] on {m['n']} items"


def _summarise(instance, recipes: list[str], labels: dict[str, str] | None = None) -> dict:
    """`labels`: recipe -> the name to show (an oracle's says it reads the planted truth)."""
    import dagster as dg

    def label(recipe: str) -> str:
        return (labels or {}).get(recipe, recipe)

    def latest(key: str, partition: str | None = None) -> dict:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None), limit=1).records
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}

    from mm_assets.partitions import SPACES
    from mm_assets.taxonomy import BENCHMARKS, DOMAINS
    from mm_assets.training.assets import first_seed_final

    def dedup(recipe: str) -> dict:
        m = latest("semdedup_mask", recipe)
        keys = ("n", "target_removal", "achieved_removal", "removed", "eps", "exact",
                "precision_vs_planted", "recall_vs_planted", "at_planted_rate")
        return {space: {k: m[f"{space}/{k}"] for k in keys if f"{space}/{k}" in m} for space in SPACES}

    def curated(recipe: str) -> dict:
        out = {}
        for domain in DOMAINS:
            m = latest("curated_dataset", dg.MultiPartitionKey({"recipe": recipe, "domain": domain}))
            out[domain] = {"in": m["samples_in"], "out": m["samples_out"], "version": m["version"]}
        return out

    def training(recipe: str) -> dict:
        m = latest("training_run", recipe)
        return {"training_run": m["training_run"], "checkpoints": m["checkpoints"], "steps": m["steps"],
                "budget_tokens": m["budget_tokens"], "tokens_seen": m["tokens_seen"], "epochs_seen": m["epochs_seen"],
                "loss_first_10pct": round(m["loss_first_10pct"], 3), "loss_last_10pct": round(m["loss_last_10pct"], 3),
                "tokens_per_s": round(m["tokens_per_s"] or 0), "seconds": round(m["seconds"], 1)}

    def steps() -> dict:
        ppl, rel = latest("perplexity_decisions", "ppl_top50"), latest("relevance_decisions", "v1")
        dec, reph = latest("decontamination_decisions", "v1"), latest("rephrase_decisions", "rephrase")
        return {
            "perplexity (ppl_top50)": {"canary_recall": ppl["canary_recall"], "canary_lift": ppl["canary_lift"],
                                       "canary_lift_by_removal": ppl["canary_lift_by_removal"],
                                       "keep_rate_per_domain": ppl["keep_rate_per_domain"]},
            "relevance flag (v1)": {k: rel["vs_planted_unrelated"][k] for k in ("planted", "caught", "catch_rate",
                                                                               "flagged", "flag_rate")},
            "decontamination (v1)": {k: dec["vs_planted_leaks"][k] for k in ("planted", "caught", "recall",
                                                                             "removed_not_leaked")},
            "mining: top-10 neighbours from the benchmark's domain": latest("eval_neighbours")[
                "top10_from_benchmark_domain/question"],
            "rephrase": {k: reph[k] for k in ("selected", "rewritten_samples", "rejected", "rejected_by_reason",
                                              "generated", "from_cache")},
        }

    def side_by_side() -> dict:
        table = {}
        for r in recipes:
            # the first training seed's run (multi-seed comparisons belong to the ablation report)
            final = first_seed_final(latest("training_run", r))["checkpoint"]
            table[label(r)] = {b: round(latest("eval_scores", dg.MultiPartitionKey(
                {"checkpoint": final, "benchmark": b}))["score"], 3) for b in BENCHMARKS}
        return table

    return {
        "samples_per_domain": {d: latest("samples", d)["rows"] for d in DOMAINS},
        "quarantine_by_reason": latest("quarantine")["by_reason"],
        "eval_items": {b: latest("eval_sets", b)["items"] for b in BENCHMARKS},
        "semdedup": {label(r): dedup(r) for r in recipes if latest("semdedup_mask", r).get("in_recipe")},
        "curated_datasets": {label(r): curated(r) for r in recipes},
        "curation_steps": steps(),
        "training": {label(r): training(r) for r in recipes},
        "leaderboard (final checkpoint of each recipe)": side_by_side(),
        "vs baseline at equal compute (paired on eval items, 95% bootstrap interval; * excludes 0)":
            latest("leaderboard")["vs_baseline_at_equal_compute"],
        "ablation report (delta to baseline in points, one seed here; `make study` runs three)":
            latest("ablation_report").get("delta_points", "waiting for baseline's evals"),
        "evals": {c: {b: _score(latest("eval_scores", dg.MultiPartitionKey({"checkpoint": c, "benchmark": b})))
                      for b in BENCHMARKS}
                  for c in sorted(instance.get_dynamic_partitions("checkpoint"))},
    }
