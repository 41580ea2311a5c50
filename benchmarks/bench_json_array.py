"""`make bench` — the JSON-array splitter on a large array, clean and with one broken element.

Each measurement runs in a fresh subprocess so its peak RSS is its own:
1. the floor: reading the file in 8 MiB chunks (no parsing);
2. ours: splitting it into elements (`JsonArrayScanner`), and splitting plus `json.loads` of
   every element — reported as MB/s and as a ratio to the floor measured in the same run;
3. the same array with one defect in element 1 — a missing closing `}` and, separately, an
   unterminated string: how many records are lost (the defective one only, if the splitter
   resynchronises) and the peak RSS against the clean run;
4. one huge element (1 GB of one string, between two good records): it is reported as too large
   with its first bytes only, its neighbours come through, and peak RSS stays near the clean run.
`--quick` uses a 4 MB array and an 80 MB element (seconds; what the test suite runs). Results go
to stdout and `.bench/results/json_array.json` (`--quick`: `json_array_quick.json`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"
RECORD = ('{"id": "%d", "image": "images/%d.jpg", "conversations": [{"from": "human", "value": "<image>\\n'
          'What is written in the box number %d? Give the answer in one phrase, then explain."}, '
          '{"from": "gpt", "value": "The box reads \\"%d\\". %s"}], "source": "gen_ocr_words"}')
FILLER = "The text is printed in black on a white label, centred, in a sans-serif font. " * 9


def write_array(path: Path, target_bytes: int, defect: str | None = None) -> int:
    """A Mammoth-like array of about `target_bytes`; returns its record count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n, size = 0, 1
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        while size < target_bytes:
            rec = RECORD % (n, n, n, n, FILLER)
            if n == 1 and defect == "missing_brace":
                rec = rec[:-1]
            elif n == 1 and defect == "unterminated_string":
                rec = rec.replace('"gen_ocr_words"}', '"gen_ocr_words}')
            text = ("" if n == 0 else ",\n") + rec
            f.write(text)
            size += len(text)
            n += 1
        f.write("]")
    return n


def write_huge_element(path: Path, element_bytes: int) -> int:
    """[good, {"id": .., "blob": "aaaa…"} of `element_bytes`, good]; returns 3."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("[" + RECORD % (0, 0, 0, 0, "") + ',\n{"id": "huge", "blob": "')
        chunk = "a" * (8 << 20)
        for _ in range(element_bytes // len(chunk)):
            f.write(chunk)
        f.write('"},\n' + RECORD % (2, 2, 2, 2, "") + "]")
    return 3


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(kind: str, path: str) -> dict:
    from mm_assets.sources.json_array import JsonArrayScanner

    t0 = time.perf_counter()
    good = bad = oversized = 0
    with open(path, "rb") as f:
        if kind == "read":
            while f.read(8 << 20):
                pass
        else:
            sc = JsonArrayScanner(f)
            for el in sc:
                if el.oversized:
                    oversized += 1
                    continue
                if kind == "split":
                    good += 1
                    continue
                try:
                    json.loads(el.data)
                    good += 1
                except ValueError:
                    bad += 1
    seconds = time.perf_counter() - t0
    mb = Path(path).stat().st_size / 1e6
    return {"kind": kind, "seconds": seconds, "mb_per_s": mb / seconds, "good": good, "bad": bad,
            "oversized": oversized, "peak_rss_mb": peak_rss_mb()}


def run_worker(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, str(path)], check=True,
                         capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(quick: bool, root: Path, out: Path) -> dict:
    size = 4_000_000 if quick else 400_000_000
    files = {}
    for defect in (None, "missing_brace", "unterminated_string"):
        path = root / f"{defect or 'clean'}.json"
        n = write_array(path, size, defect)
        files[defect or "clean"] = (path, n)
    clean, n = files["clean"]
    results = {"records": n, "mb": clean.stat().st_size / 1e6,
               "read": run_worker("read", clean), "split": run_worker("split", clean),
               "split_and_parse": run_worker("parse", clean)}
    for defect in ("missing_brace", "unterminated_string"):
        path, n_defect = files[defect]
        r = run_worker("parse", path)
        results[defect] = dict(r, records=n_defect, lost=n_defect - r["good"])
    huge = root / "huge_element.json"
    write_huge_element(huge, (80 << 20) if quick else (1 << 30))
    results["huge_element"] = dict(run_worker("parse", huge), element_mb=huge.stat().st_size / 1e6)
    huge.unlink()
    floor = results["read"]["mb_per_s"]
    results["ratios"] = {"split_vs_read": results["split"]["mb_per_s"] / floor,
                         "split_and_parse_vs_read": results["split_and_parse"]["mb_per_s"] / floor,
                         "rss_missing_brace_vs_clean": results["missing_brace"]["peak_rss_mb"]
                         / results["split_and_parse"]["peak_rss_mb"]}
    print(f"array: {results['mb']:.0f} MB, {n:,} records")
    print(f"read (floor) {floor:,.0f} MB/s; split {results['split']['mb_per_s']:,.0f} MB/s "
          f"(×{results['ratios']['split_vs_read']:.3f} of the floor); split + json.loads "
          f"{results['split_and_parse']['mb_per_s']:,.0f} MB/s (×{results['ratios']['split_and_parse_vs_read']:.3f})")
    for defect in ("missing_brace", "unterminated_string"):
        r = results[defect]
        print(f"{defect} in element 1: {r['lost']} of {r['records']:,} records lost, {r['bad']} quarantined, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (clean: {results['split_and_parse']['peak_rss_mb']:.0f} MB)")
    h = results["huge_element"]
    print(f"one {h['element_mb']:,.0f} MB element between two records: {h['oversized']} reported too large, "
          f"{h['good']} of 2 neighbours kept, {h['seconds']:.1f} s, peak RSS {h['peak_rss_mb']:.0f} MB")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3])))
    else:
        ap = argparse.ArgumentParser()
        ap.add_argument("--quick", action="store_true", help="tiny sizes, seconds (what the test suite runs)")
        ap.add_argument("--work", default=None, help="where the arrays are written")
        ap.add_argument("--out", default=None)
        args = ap.parse_args()
        main(args.quick, Path(args.work or BENCH / "json_array" / ("quick" if args.quick else "full")),
             Path(args.out or BENCH / "results" / f"json_array{'_quick' if args.quick else ''}.json"))
