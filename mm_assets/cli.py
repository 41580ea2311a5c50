"""`mm-curation`: the project's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _sample_data(args: argparse.Namespace) -> int:
    from mm_assets.sample_data import generate_sample_data
    summary = generate_sample_data(Path(args.out), scale=args.scale, seed=args.seed, workers=args.workers)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mm_assets.demo import run_demo
    summary = run_demo(Path(args.home), scale=args.scale, seed=args.seed)
    print(json.dumps(summary, indent=2, default=str))
    print(f"\nThe materializations are in the Dagster instance at {Path(args.home).resolve() / 'dagster_home'}."
          "\nOpen the UI with:  make ui   (then http://127.0.0.1:3000/assets)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mm-curation", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sd = sub.add_parser("sample-data", help="write Mammoth-layout look-alike data with planted truth")
    sd.add_argument("--out", required=True, help="output directory")
    sd.add_argument("--scale", choices=["demo", "bench"], default="demo")
    sd.add_argument("--seed", type=int, default=0)
    sd.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    sd.set_defaults(func=_sample_data)

    demo = sub.add_parser("demo", help="generate data and materialize the graph into a persistent instance")
    demo.add_argument("--home", default=".demo", help="demo home: data, artifacts, DAGSTER_HOME")
    demo.add_argument("--scale", choices=["demo", "bench"], default="demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
