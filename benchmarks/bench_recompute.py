"""Recompute after a recipe threshold change vs the cold pipeline, at demo scale, same run.

1. cold: the whole graph from `source` to `curated_dataset` for every runnable recipe, on a
   fresh instance and an empty artifact store, with the default embedder (the tiny SigLIP2,
   trained by the `embedder` asset — the largest part of the cold time; reported separately);
2. edit: `semdedup10`'s target_removal 0.10 → 0.12 in the recipe file, then what the recipe
   sensor and the automation sensor do: one observation of the recipe sections, automation
   ticks (each evaluates the conditions and materializes what they request) until nothing more
   is requested;
3. the ratio recompute / cold (acceptance: ≤ 5 %), and which assets were re-materialized.

Results go to stdout and `.bench/results/recompute.json`. `--quick`: the same on 16 records per
domain, with the recipe `semdedup10` only and 2 embedder training steps (under a minute;
what the test suite runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = REPO / ".bench" / "results"
QUICK = {"records_per_domain": 16, "recipes": "semdedup10", "embedder_train_steps": 2,
         "out": str(RESULTS / "recompute_quick.json")}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes, seconds (what the test suite runs)")
    ap.add_argument("--records-per-domain", type=int, default=None, help="default: the demo scale's")
    ap.add_argument("--recipes", default=None, help="comma-separated shipped recipes (default: all)")
    ap.add_argument("--embedder-train-steps", type=int, default=None, help="default: the embedder resource's")
    ap.add_argument("--work", default=None, help="the home (default: a new temporary directory, removed after)")
    ap.add_argument("--out", default=str(RESULTS / "recompute.json"))
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    args = ap.parse_args()
    home = Path(args.work or tempfile.mkdtemp(prefix="mm-bench-recompute-"))
    recipes = home / "recipes"
    if args.recipes:
        recipes.mkdir(parents=True)
        for name in args.recipes.split(","):
            shutil.copyfile(REPO / "recipes" / f"{name}.yaml", recipes / f"{name}.yaml")
    else:
        shutil.copytree(REPO / "recipes", recipes)
    os.environ.update({"MM_HOME": str(home), "MM_RECIPES": str(recipes)})
    if args.embedder_train_steps:
        os.environ["MM_EMBEDDER_TRAIN_STEPS"] = str(args.embedder_train_steps)
    from mm_assets.demo import ensure_sample_data, prepare_home
    prepare_home(home)
    from resources.settings import sample_data_dir
    if args.records_per_domain:
        from mm_assets.sample_data import generate_sample_data
        generate_sample_data(sample_data_dir(), scale="demo", seed=0, workers=2,
                             _records_per_domain=args.records_per_domain, _eval_items=args.records_per_domain)
    else:
        ensure_sample_data(sample_data_dir(), "demo", 0)

    import dagster as dg

    from mm_assets.definitions import build_definitions
    from mm_assets.local_runner import LocalGraph, new_materializations

    defs = build_definitions()
    g = LocalGraph(defs, dg.DagsterInstance.get())
    g.fill(eval_sets=False)             # eval sets only where a recipe's steps read them (as the docstring's cold path)
    cold = g.seconds["fill"]
    training = g.seconds["embedder_job"]
    assert g.settle() == [{}]                      # the first tick marks the filled graph handled

    before = g.materializations()
    path = recipes / "semdedup10.yaml"
    path.write_text(path.read_text().replace("target_removal: 0.10", "target_removal: 0.12"))
    started = time.perf_counter()
    g.register_recipes()
    ticks = g.settle()
    recompute = time.perf_counter() - started
    changed = new_materializations(before, g.materializations())
    res = {
        "cold_seconds": cold, "cold_embedder_training_seconds": training,
        "cold_without_training_seconds": cold - training,
        "recompute_seconds": recompute, "ratio": recompute / cold,
        "ratio_vs_cold_without_training": recompute / (cold - training),
        "acceptance_ratio_le_5pct": recompute / cold <= 0.05,
        "automation_ticks": ticks,
        "rematerialized": {f"{k}[{p}]" if p else k: n for (k, p), n in sorted(changed.items(), key=str)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"cold pipeline           {cold:7.1f} s (of which embedder training {training:.1f} s)")
    print(f"recompute after edit    {recompute:7.1f} s = {100 * res['ratio']:.2f} % of cold "
          f"({100 * res['ratio_vs_cold_without_training']:.2f} % of cold without training)")
    print(f"re-materialized         {sorted(res['rematerialized'])}")
    if not args.work:
        shutil.rmtree(home, ignore_errors=True)
    return res


if __name__ == "__main__":
    main()
