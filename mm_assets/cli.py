"""`mm-curation`: the project's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mm_assets.taxonomy import BENCHMARKS


def _mix_overrides(pairs: list[str] | None) -> dict | None:
    """`--mix low_quality_rate=0.1 --mix leak_rate=0.05` -> {"low_quality_rate": 0.1, ...}; a
    preset's name (`--mix refusals`) stands for its fields, in order with the pairs."""
    from mm_assets.sample_data.scales import MIX_PRESETS

    if not pairs:
        return None
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            preset = MIX_PRESETS.get(pair.strip())
            if preset is None:
                raise SystemExit(f"--mix expects FIELD=VALUE or a preset ({', '.join(sorted(MIX_PRESETS))}), "
                                 f"got {pair!r}")
            out.update(preset)
            continue
        out[key.strip()] = float(value)
    return out


def _sample_data(args: argparse.Namespace) -> int:
    from mm_assets.sample_data import generate_sample_data
    summary = generate_sample_data(Path(args.out), scale=args.scale, seed=args.seed, workers=args.workers,
                                   mix=_mix_overrides(args.mix))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mm_assets.console import StageConsole, quiet_libraries
    from mm_assets.demo import run_demo
    from mm_assets.summary_tables import curated_table, print_summary, scores_table, steps_table

    quiet_libraries()
    home = Path(args.home).resolve()
    with StageConsole():
        summary = run_demo(home, scale=args.scale, seed=args.seed)
    ingested = sum(summary["samples_per_domain"].values())
    tables = [curated_table(summary["curated_datasets"], ingested),
              steps_table(summary["semdedup"], summary["curation_steps"]),
              scores_table(summary["ablation"], "Final checkpoints at equal compute (one seed; `make study` runs "
                                                "three): score per benchmark, paired difference to baseline")]
    print_summary(tables, summary, home / "summary.json", [
        f"The materializations are in the Dagster instance at {home / 'dagster_home'}.",
        "Open the UI with:  make ui   (then http://127.0.0.1:3000/assets)",
        f"Ask the ledger and the event log (with DAGSTER_HOME={home / 'dagster_home'} MM_HOME={home}):",
        "  mm-curation why SAMPLE_ID --recipe semdedup10",
        "  mm-curation lineage 'curated_dataset[semdedup10/chart]'",
        "  mm-curation lineage CHECKPOINT      (any name from the leaderboard: down to raw shard hashes)"])
    return 0


def _study(args: argparse.Namespace) -> int:
    from mm_assets.console import StageConsole, quiet_libraries
    from mm_assets.demo import run_study
    from mm_assets.summary_tables import print_summary, scores_table

    quiet_libraries()
    home = Path(args.home).resolve()
    with StageConsole():
        summary = run_study(home, seed=args.seed, extra=tuple(args.extra or ()), mix=_mix_overrides(args.mix))
    lines = [f"Ablation report (tables, plots): {summary['report']}"]
    for key in ("removals_by_defect_kind", "contamination"):
        if summary.get(key):
            lines += ["", f"## {key}", "", str(summary[key])]
    lines += ["", f"The study's graph is in the Dagster instance at {home / 'dagster_home'}; open it with",
              f"  make ui MM_HOME={home}"]
    print_summary([scores_table(summary["ablation"], "Curation study: mean over seeds per benchmark, paired "
                                                     "difference to baseline at equal compute")],
                  summary, home / "summary.json", lines)
    return 0


def _instance_and_defs():
    import dagster as dg

    from mm_assets.definitions import defs
    return dg.DagsterInstance.get(), defs


def _why(args: argparse.Namespace) -> int:
    from mm_assets.lineage import LineageError, why
    from resources.settings import storage_resource
    import dagster as dg
    instance = dg.DagsterInstance.get()
    try:
        text, _ = why(instance, storage_resource().get(), args.sample_id, args.recipe)
    except LineageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


def _lineage(args: argparse.Namespace) -> int:
    from mm_assets.lineage import LineageError, lineage
    instance, defs = _instance_and_defs()
    try:
        print(lineage(instance, defs, args.target))
    except LineageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _soup(args: argparse.Namespace) -> int:
    from mm_assets.checkpoints import IncompleteCheckpoint
    from mm_assets.mixing.soups import write_soup
    from resources.settings import checkpoint_store_resource
    weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    store = checkpoint_store_resource().get()
    try:
        name = write_soup(store, args.experts, weights, label=args.label)
    except (IncompleteCheckpoint, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{name}: written to {store.uri(name)} (the checkpoint sensor registers it and requests its evals)")
    if args.export:
        from mm_assets.mixing.soups import export_soup
        try:
            out = export_soup(store, name, args.export)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: merged weights written to {out} (a standalone model directory)")
    return 0


def _soups(args: argparse.Namespace) -> int:
    from mm_assets.checkpoints import IncompleteCheckpoint
    from mm_assets.evaluation.benchmarks import get as get_benchmark
    from mm_assets.evaluation.runner import eval_items
    from mm_assets.mixing.sweep import EvalTarget, sweep_soups, write_subset_soups
    from resources.json_io_manager import read_pointers
    from resources.settings import checkpoint_store_resource, eval_backend_resource, storage_resource
    experts = dict(e.split("=", 1) for e in args.expert)
    store, st, backend = checkpoint_store_resource().get(), storage_resource().get(), eval_backend_resource()

    def targets() -> list:
        return [EvalTarget(get_benchmark(bench_name), eval_items(st, pointer, backend.max_items), pointer["version"],
                           backend.max_items)
                for bench_name, pointer in read_pointers(st, "eval_sets", args.benchmarks).items()]
    try:
        if args.search:
            return _search(args, store, st, backend, experts, targets())
        soups = write_subset_soups(store, experts)
        print(f"{len(soups)} soups of {len(experts)} experts written to {store.uri('')}")
        if args.sweep:
            counts = sweep_soups(store, st, list(soups.values()), targets(), backend=backend.kind,
                                 batch_size=backend.batch_size, device=backend.device,
                                 progress=lambda soup, bench: print(f"  {soup} on {bench}", flush=True))
            print(f"evaluated in Gray-code order: {counts}")
    except (IncompleteCheckpoint, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("the checkpoint sensor registers the soups; their eval_scores runs reuse the stored predictions")
    return 0


def _search(args: argparse.Namespace, store, st, backend, experts: dict, targets: list) -> int:
    """`soups --search`: only the soups the search visits are written and evaluated."""
    from mm_assets.metadata import content_digest
    from mm_assets.mixing.sweep import search_soups

    result, names = search_soups(store, st, experts, targets, args.search, width=args.width, budget=args.budget,
                                 alpha=args.alpha, seed=args.seed, backend=backend.kind,
                                 batch_size=backend.batch_size, device=backend.device,
                                 progress=lambda soup, score: print(f"  {soup}: average {score:.4f}", flush=True))
    record = {"search": result.method, "experts": experts, "benchmarks": [t.bench.name for t in targets],
              "evaluations": result.evaluations, "best": names[result.best], "best_average": result.score,
              "curve": [{"evaluations": n, "best_average": best, "soup": names[key]} for n, best, key in result.curve]}
    path = f"soup_searches/{content_digest(record)[:16]}.json"
    st.write_json(path, record)
    print(f"{result.method}: best {names[result.best]} (average {result.score:.4f}) after {result.evaluations} "
          f"soups evaluated; curve in {st.uri(path)}")
    return 0


def _mixing(args: argparse.Namespace) -> int:
    from mm_assets.console import StageConsole, quiet_libraries
    from mm_assets.mixing.run import run_mixing_on_home

    quiet_libraries()
    try:
        with StageConsole():
            summary = run_mixing_on_home(args.home, args.domains.split(",") if args.domains else None, args.spread)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key in ("best", "searches", "rank_agreement"):
        if summary.get(key):
            print(f"\n## {key}\n\n{summary.pop(key)}")
    print("\n" + json.dumps(summary, indent=2))
    return 0


def _mixtures(args: argparse.Namespace) -> int:
    import dagster as dg

    from mm_assets.mixing.proxy import mixture_domains, spread_over_ranking
    from mm_assets.partitions import mixture_partitions
    from mm_assets.storage import Storage
    from mm_assets.taxonomy import DOMAINS

    instance = dg.DagsterInstance.get()
    labels = list(args.mixtures)
    if args.spread:
        records = instance.fetch_materializations(dg.AssetKey("mixing_table"), limit=1).records
        if not records:
            print("error: --spread ranks the mixing table's soups: materialize mixing_table first", file=sys.stderr)
            return 2
        uri = records[0].asset_materialization.metadata["uri"].value
        table = Storage(uri).read_parquet("subsets.parquet")
        labels += spread_over_ranking({r["label"]: r["average"] for r in table.iter_rows(named=True)
                                       if r["average"] is not None}, args.spread)
    try:
        for label in labels:
            mixture_domains(label, DOMAINS)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    instance.add_dynamic_partitions(mixture_partitions.name, labels)
    print(f"mixtures: {', '.join(labels)} (materialize mixture_run for each, then proxy_check once they are "
          "evaluated)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mm-curation", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sd = sub.add_parser("sample-data", help="write Mammoth-layout look-alike data with planted truth")
    sd.add_argument("--out", required=True, help="output directory")
    sd.add_argument("--scale", choices=["demo", "study", "bench"], default="demo")
    sd.add_argument("--seed", type=int, default=0)
    sd.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    sd.add_argument("--mix", action="append", metavar="FIELD=VALUE",
                    help="override a planted-mix rate (repeatable), e.g. low_quality_rate=0.1")
    sd.set_defaults(func=_sample_data)

    demo = sub.add_parser("demo", help="generate data and materialize the graph into a persistent instance")
    demo.add_argument("--home", default=".demo", help="demo home: data, artifacts, DAGSTER_HOME")
    demo.add_argument("--scale", choices=["demo", "bench"], default="demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

    study = sub.add_parser("study", help="the curation study: every recipe over three seeds at the study scale, "
                                         "then the ablation report (about an hour on 2 cores)")
    study.add_argument("--home", default=".study", help="study home: data, artifacts, DAGSTER_HOME, settings")
    study.add_argument("--seed", type=int, default=0, help="data generation seed")
    study.add_argument("--extra", action="append", metavar="RECIPE",
                       help="also train this recipe of recipes/study/extra/ (repeatable), e.g. domain_weights")
    study.add_argument("--mix", action="append", metavar="FIELD=VALUE",
                       help="change a field of the study's planted mix (repeatable), e.g. refusal_share=0.5, or "
                            "name a preset: refusals (half of the records' answers refused)")
    study.set_defaults(func=_study)

    soup = sub.add_parser("soup", help="write the merge (soup) of checkpoints into the checkpoint store as a "
                                       "checkpoint of its own: a manifest, its weights merged when it is evaluated")
    soup.add_argument("experts", nargs="+", help="checkpoint names in the checkpoint store (MM_CHECKPOINTS)")
    soup.add_argument("--weights", help="comma-separated, one per expert (default: the uniform mean)")
    soup.add_argument("--label", help="names the subset in the soup's name, e.g. chart+ocr")
    soup.add_argument("--export", metavar="DIR", help="also write the merged weights (model.safetensors) with the "
                                                      "configuration and tokenizer to DIR, a standalone model")
    soup.set_defaults(func=_soup)

    soups = sub.add_parser("soups", help="the uniform soup of every subset of experts, written as checkpoints and "
                                         "evaluated in Gray-code order (one expert added or removed per soup)")
    soups.add_argument("--expert", action="append", required=True, metavar="LABEL=CHECKPOINT",
                       help="an expert (repeatable), e.g. chart=chart-expert-e1-s400; labels name the soups")
    soups.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), help="eval sets to evaluate on")
    soups.add_argument("--no-sweep", dest="sweep", action="store_false",
                       help="only write the soups (their eval_scores runs then merge and generate one by one)")
    soups.add_argument("--search", choices=["greedy", "beam", "dirichlet"],
                       help="evaluate only the soups a search visits: greedy soup, beam search over subsets, or "
                            "weighted soups with Dirichlet-sampled weights")
    soups.add_argument("--width", type=int, default=2, help="beam width (--search beam)")
    soups.add_argument("--budget", type=int, help="the most soups to evaluate (required for dirichlet)")
    soups.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration (below 1: few experts)")
    soups.add_argument("--seed", type=int, default=0, help="Dirichlet sampling seed")
    soups.set_defaults(func=_soups)

    mixing = sub.add_parser("mixing", help="data mixing on a filled home: shared start, domain experts, every "
                                           "subset soup (Gray-code sweep), the mixing table and, with --spread, the "
                                           "proxy check against real mixtures; prints where the time went")
    mixing.add_argument("--home", default=".study", help="a home filled by `demo` or `study`")
    mixing.add_argument("--domains", help="comma-separated expert domains (default: every domain with data)")
    mixing.add_argument("--spread", type=int, default=8, metavar="K",
                        help="real mixtures to train for the proxy check (0: none)")
    mixing.set_defaults(func=_mixing)

    mixtures = sub.add_parser("mixtures", help="add data mixtures to train for real (mixture_run partitions), "
                                               "named or spread over the mixing table's ranking")
    mixtures.add_argument("mixtures", nargs="*", help="domains joined by + in sorted order, e.g. chart+ocr")
    mixtures.add_argument("--spread", type=int, default=0, metavar="K",
                          help="K mixtures of 2+ domains at evenly spaced places of the soups' ranking by average")
    mixtures.set_defaults(func=_mixtures)

    why = sub.add_parser("why", help="a sample's path through every step of a recipe (from the decision ledger)")
    why.add_argument("sample_id")
    why.add_argument("--recipe", required=True)
    why.set_defaults(func=_why)

    lin = sub.add_parser("lineage", help="the tree from an artifact version down to raw shard hashes "
                                         "(from Dagster's event log and the manifests)")
    lin.add_argument("target", help="asset[partition] (e.g. curated_dataset[semdedup10/chart]) or a data version")
    lin.set_defaults(func=_lineage)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
