"""`make bench` — ingest throughput and peak memory at bench scale.

Measures, each in a fresh subprocess so peak RSS is the ingest's own:
1. ours: the `source` scan plus `raw_shards` for all 8 domains (WebDataset writing, shard
   validation, image decode checks) on the bench-scale JSON array (≥100,000 records);
2. the same with the JSON array doubled (every record twice; images unchanged), to show peak
   RSS stays flat in the array's size (streaming);
3. the floor: the least work any ingest must do on the same input — split and `json.loads`
   every element and read every image member once in tar order — and the floor plus the
   same image decode check ours does, so the report gives ours ÷ floor as ratios measured
   in the same run.
Results go to stdout and `.bench/results/ingest.json`. `--quick`: the same on 16 records per
domain of the demo scale (seconds; what the test suite runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"
QUICK = {"scale": "demo", "records_per_domain": 16, "work": str(BENCH / "ingest_quick"),
         "out": str(BENCH / "results" / "ingest_quick.json")}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_ingest(annotations: str, images: str, domain_map: str, out_dir: str) -> dict:
    from mm_assets.sources.ingest import ingest_domain
    from mm_assets.sources.source_scan import SourceSpec, scan_sources
    from mm_assets.storage import Storage
    from mm_assets.taxonomy import DOMAINS

    out = Storage(out_dir)
    t0 = time.perf_counter()
    manifest = scan_sources([SourceSpec("main", annotations, images)], domain_map, out.child("source"))
    t1 = time.perf_counter()
    samples = quarantined = 0
    for d in DOMAINS:
        m = ingest_domain(out.child("source"), manifest, d, out.child(f"raw/{d}"))
        samples += m["samples"]
        quarantined += m["quarantined"]
    t2 = time.perf_counter()
    records = sum(v["records"] for v in manifest["domains"].values()) + manifest["quarantine"]["rows"]
    return {"records": records, "samples": samples, "quarantined": quarantined + manifest["quarantine"]["rows"],
            "scan_s": t1 - t0, "shards_s": t2 - t1, "total_s": t2 - t0,
            "samples_per_s": records / (t2 - t0), "peak_rss_mb": peak_rss_mb()}


def worker_floor(annotations: str, images: str) -> dict:
    from mm_assets.sources.json_array import JsonArrayScanner

    t0 = time.perf_counter()
    n = 0
    with open(annotations, "rb") as f:
        for el in JsonArrayScanner(f):
            json.loads(el.data)
            n += 1
    from mm_assets.sources.ingest import inspect_image

    image_bytes = 0
    check_s = 0.0
    for tb in sorted(Path(images).glob("*.tar.gz")):
        with tarfile.open(tb, "r|gz") as t:
            for m in t:
                if m.isfile():
                    data = t.extractfile(m).read()
                    image_bytes += len(data)
                    c = time.perf_counter()
                    inspect_image(data)
                    check_s += time.perf_counter() - c
    dt = time.perf_counter() - t0
    return {"records": n, "total_s": dt - check_s, "samples_per_s": n / (dt - check_s),
            "with_image_check_s": dt, "with_image_check_samples_per_s": n / dt,
            "image_mb": image_bytes / 1e6, "peak_rss_mb": peak_rss_mb()}


def run_worker(kind: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, *args], check=True,
                         capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def double_array(src: Path, dst: Path) -> None:
    """Write a JSON array holding every element of `src` twice, streaming."""
    from mm_assets.sources.json_array import JsonArrayScanner

    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as out:
        out.write(b"[")
        first = True
        for _ in range(2):
            with open(src, "rb") as f:
                for el in JsonArrayScanner(f):
                    out.write((b"" if first else b",\n") + el.data)
                    first = False
        out.write(b"]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes, seconds (what the test suite runs)")
    ap.add_argument("--scale", default="bench")
    ap.add_argument("--records-per-domain", type=int, default=None, help="default: the scale's")
    ap.add_argument("--work", default=str(BENCH), help="where the data is generated and cached")
    ap.add_argument("--out", default=str(BENCH / "results" / "ingest.json"))
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    args = ap.parse_args()
    work = Path(args.work)
    data = work / "sample_data"
    if not (data / "truth" / "planted_truth.json").exists():
        from mm_assets.sample_data import generate_sample_data
        t = time.perf_counter()
        summary = generate_sample_data(data, scale=args.scale, seed=0, _records_per_domain=args.records_per_domain,
                                       _eval_items=args.records_per_domain)
        print(f"generated {args.scale} data in {time.perf_counter() - t:.0f}s: {summary.get('records')}")
    annotations = data / "main" / "mammoth_si.json"
    images = data / "main" / "images"
    domain_map = data / "source_to_domain.json"
    doubled = work / "doubled" / "mammoth_si.json"
    if not doubled.exists():
        double_array(annotations, doubled)

    results = {}
    with tempfile.TemporaryDirectory(prefix="mm-bench-") as tmp:
        results["floor"] = run_worker("floor", str(annotations), str(images))
        results["ours"] = run_worker("ingest", str(annotations), str(images), str(domain_map), f"{tmp}/a")
        shutil.rmtree(f"{tmp}/a")
        results["ours_doubled_array"] = run_worker("ingest", str(doubled), str(images), str(domain_map), f"{tmp}/b")
    ours, floor, dbl = results["ours"], results["floor"], results["ours_doubled_array"]
    results["ratios"] = {
        "ours_vs_floor_throughput": ours["samples_per_s"] / floor["samples_per_s"],
        "ours_vs_floor_with_image_check": ours["samples_per_s"] / floor["with_image_check_samples_per_s"],
        "peak_rss_doubled_vs_single": dbl["peak_rss_mb"] / ours["peak_rss_mb"],
        "array_bytes_doubled_vs_single": os.path.getsize(doubled) / os.path.getsize(annotations),
    }
    print(f"records: {ours['records']:,} (doubled: {dbl['records']:,})")
    print(f"ingest: {ours['samples_per_s']:,.0f} samples/s (scan {ours['scan_s']:.1f}s + shards {ours['shards_s']:.1f}s), "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB")
    print(f"floor (split + json.loads + read every image once): {floor['samples_per_s']:,.0f} samples/s")
    print(f"floor + the same image decode check: {floor['with_image_check_samples_per_s']:,.0f} samples/s")
    print(f"ratio ours/floor: {results['ratios']['ours_vs_floor_throughput']:.2f}; "
          f"ours/(floor + image check): {results['ratios']['ours_vs_floor_with_image_check']:.2f}")
    print(f"doubled array: peak RSS {dbl['peak_rss_mb']:.0f} MB "
          f"(×{results['ratios']['peak_rss_doubled_vs_single']:.2f} for ×{results['ratios']['array_bytes_doubled_vs_single']:.2f} input)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, args = sys.argv[2], sys.argv[3:]
        fn = {"ingest": worker_ingest, "floor": worker_floor}[kind]
        print(json.dumps(fn(*args)))
    else:
        main()
