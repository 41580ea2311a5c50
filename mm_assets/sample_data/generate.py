"""Entry point: write the whole look-alike data set (main, dirty, eval, trusted pool, planted truth)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from mm_assets import progress

from . import eval_sets
from .canvas import Sizing
from .dirty import write_dirty
from .families import DOMAINS, FAMILIES
from .plan import Plan, build_plan
from .pool import process_pool
from .render import render_chunk
from .scales import PlantedMix, resolve_scale
from .sources import source_to_domain
from .trusted import write_trusted_pool
from .writer import JsonArrayWriter, atomic_path, write_json, write_tar_gz

# 2: answer-format instructions (instructions.py), planted mix in the truth; 3: reference splits
GENERATOR_VERSION = "3"
MAIN_JSON = "main/mammoth_si.json"
# What each main-source image shows, as question/answer pairs (one JSON line per image, by its
# sha256): the look-alike generator's own knowledge of the pictures, which only generated data
# has. Not planted truth: it names no defect. MM-GEN's `drawn` generator reads it.
IMAGE_CONTENT = "content/image_content.jsonl"


def _ref(plan: Plan, ordinal: int) -> dict:
    u = plan.units[ordinal]
    return {"file": MAIN_JSON, "ordinal": ordinal, "id": u.id, "domain": u.domain,
            "source": FAMILIES[u.family].source}


def _truth(plan: Plan, lq_applied: dict[int, str], dirty: dict) -> dict:
    units = plan.units
    per_domain = {d: 0 for d in DOMAINS}
    for u in units:
        per_domain[u.domain] += 1
    originals = {u.group: u.ordinal for u in units if u.kind == "base" and u.group is not None}
    members: dict[int, list[int]] = {}
    for u in units:
        if u.kind == "dup":
            members.setdefault(u.group, []).append(u.ordinal)
    groups = [{"group_id": f"g{gid + 1:05d}", "kind": kind, "original": _ref(plan, originals[gid]),
               "duplicates": [_ref(plan, o) for o in members[gid]]} for gid, kind in plan.groups]
    n_dup = sum(len(v) for v in members.values())
    return {
        "seed": plan.seed, "scale": plan.scale.name, "generator_version": GENERATOR_VERSION,
        "mix": plan.scale.mix.as_dict(),
        "main": {"records": len(units), "per_domain": per_domain, "shards": plan.n_shards},
        "near_duplicate_groups": groups,
        "near_duplicate_rate": n_dup / len(units),
        "low_quality": [{"ref": _ref(plan, o), "kind": k} for o, k in sorted(lq_applied.items())],
        "leaked_eval_items": [{"ref": _ref(plan, u.ordinal), "benchmark": u.bench,
                               "item_id": eval_sets.item_id(u.bench, u.index, plan.seed),
                               "row_index": u.index, "reencoded": u.reencode}
                              for u in units if u.kind == "leak"],
        "image_token_fixable": [_ref(plan, u.ordinal) for u in units if u.no_image_token],
        "dirty": dirty,
    }


def generate_sample_data(out_dir: str | Path, scale: str = "demo", seed: int = 0,
                         workers: int | None = None, *, mix: PlantedMix | dict | None = None,
                         _records_per_domain: int | None = None, _eval_items: int | None = None) -> dict:
    """Write the Mammoth-layout look-alike data set under `out_dir`; return a summary.

    The output depends only on (scale, mix, seed): the same seed gives byte-identical files for
    any `workers`. `mix` overrides the scale's planted mix: a whole `PlantedMix` or a dict of the
    fields to change. `_records_per_domain` and `_eval_items` shrink a scale (tests only).
    """
    t0 = time.perf_counter()
    cfg = resolve_scale(scale, _records_per_domain, _eval_items, mix)
    workers = max(1, workers or os.cpu_count() or 1)
    out = Path(out_dir)
    for sub in ("main/images", "dirty/images", "eval/pixmo_points_images", "truth", "content"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    write_json(out / "source_to_domain.json", source_to_domain())

    plan = build_plan(cfg, seed)
    sizing = Sizing(cfg.img_min, cfg.img_max)
    chunks = [(plan.units[i:i + cfg.chunk_size], seed, sizing)
              for i in range(0, len(plan.units), cfg.chunk_size)]
    lq_applied: dict[int, str] = {}
    shard_paths = [out / "main" / "images" / f"shard_{k:04d}.tar.gz" for k in range(plan.n_shards)]
    with process_pool(workers) as pool:
        side = [pool.apply_async(eval_sets.write_eval_set, (b, n, seed, out / "eval", split))
                for split, n in (("eval", cfg.eval_items), ("reference", eval_sets.reference_items(cfg.eval_items)))
                for b in eval_sets.BENCHMARKS]
        dirty_job = pool.apply_async(write_dirty, (out / "dirty", seed))
        trusted_job = pool.apply_async(write_trusted_pool, (out, cfg, seed))
        shard, members = 0, []
        with JsonArrayWriter(out / MAIN_JSON) as json_out, atomic_path(out / IMAGE_CONTENT) as content_path, \
                open(content_path, "w", encoding="utf-8") as content_out, \
                progress.task("rendering samples", total=len(plan.units), unit="samples") as rendering:
            for rendered in pool.imap(render_chunk, chunks):
                rendering.advance(len(rendered))
                for r in rendered:
                    json_out.add(r.record)
                    if r.lq_applied:
                        lq_applied[r.ordinal] = r.lq_applied
                    if r.image is None:
                        continue
                    if r.content is not None:
                        content_out.write(json.dumps({"image_sha256": hashlib.sha256(r.image).hexdigest(),
                                                      "image": r.record["image"], "qas": r.content},
                                                     ensure_ascii=False, sort_keys=True) + "\n")
                    # shards are contiguous runs of image rows, so each is written once complete
                    members.append((r.record["image"], r.image))
                    if len(members) == plan.shard_sizes[shard]:
                        write_tar_gz(shard_paths[shard], members, cfg.gzip_level)
                        shard, members = shard + 1, []
        eval_summary = [job.get() for job in side]
        dirty = dirty_job.get()
        trusted = trusted_job.get()
    for stale in (out / "main" / "images").glob("shard_*.tar.gz"):
        if stale not in shard_paths:
            stale.unlink()

    truth = _truth(plan, lq_applied, dirty)
    write_json(out / "truth" / "planted_truth.json", truth)
    return {
        "out_dir": str(out), "scale": cfg.name, "seed": seed, "workers": workers, "mix": cfg.mix.as_dict(),
        "records": len(plan.units), "per_domain": truth["main"]["per_domain"],
        "images": sum(plan.shard_sizes), "shards": plan.n_shards,
        "near_duplicates": sum(len(g["duplicates"]) for g in truth["near_duplicate_groups"]),
        "low_quality": len(truth["low_quality"]), "leaked_eval_items": len(truth["leaked_eval_items"]),
        "dirty_records": len(dirty["records"]), "trusted_records": trusted["records"],
        "eval_items": {e["benchmark"]: e["items"] for e in eval_summary if e["split"] == "eval"},
        "reference_items": {e["benchmark"]: e["items"] for e in eval_summary if e["split"] == "reference"},
        "paths": {"main": str(out / MAIN_JSON), "images": str(out / "main" / "images"),
                  "dirty": str(out / "dirty"), "eval": str(out / "eval"),
                  "source_to_domain": str(out / "source_to_domain.json"),
                  "truth": str(out / "truth" / "planted_truth.json"), "image_content": str(out / IMAGE_CONTENT),
                  "trusted": trusted["json"], "trusted_images": trusted["images_dir"]},
        "seconds": round(time.perf_counter() - t0, 2),
    }
