"""`make bench` part: embedding throughput, and (with --quality) near-duplicate separation.

Throughput (default), on the demo-scale look-alike data (all image domains, ~2,100 images,
WebDataset shards from the real ingest), in one process, rounds alternating so every
variant sees the same background load:

1. ``embed_images`` as the pipeline calls it: shards in, vectors out, image decoding and
   preprocessing in worker threads overlapped with the forward pass (default workers and
   torch threads), and the same with forked decode processes;
2. the pure-model rate: forward passes only, on the same images already decoded and
   preprocessed into the same batches (same batch size), at the thread count
   ``embed_images`` gives the model and at all cores;
3. for reference: ``embed_images`` without overlap (decode inline, all cores for torch), and
   decode + preprocess alone.

Reports images/s and overlapped ÷ pure-model ratios, and the CPU time one image costs to decode
and preprocess and to embed (thread CPU time, which other processes on the machine barely
change: on a machine where decoding costs more CPU than the forward pass, the pipeline cannot
reach the model-only rate on the same cores, and this shows by how much).

Perplexity scoring, the same comparison: ``score_with_model`` on the general and language
shards (an untrained tiny LLaVA: the rate does not depend on the weights) with the next chunk
encoded in a worker thread, vs inline, vs the model alone on the same samples encoded
beforehand, in the same packed batches, at the same torch threads.

A second, separately labelled measurement (``--realistic-model``, "base" by default): the same
overlapped-vs-model-only comparison with a SigLIP2 whose forward pass costs what a real one's
does per image. The project's tiny SigLIP2 (~0.85 M parameters) is so cheap that decoding and
preprocessing an image costs more CPU than embedding it, which caps the ratio on a small CPU
machine whatever the pipeline does; a real checkpoint cannot be downloaded here, so this one is
randomly initialised (the rate does not depend on the weights) from a transformers config:
"base" is google/siglip2-base-patch16's vision tower (hidden 768, 12 layers, 12 heads,
intermediate 3072, patch 16; ~93 M vision parameters), "small" hidden 384 / 12 layers / 6 heads /
intermediate 1536; both at the project's image budget (the tiny embedder's image processor:
patch 16, 64 patches), text tower cut to one layer (unused here). On the first
``--realistic-images`` images (256) of the same shards, read from the shards inside the call as
the pipeline does: ``embed_images`` as the pipeline calls it, and without overlap; the model alone
on the same batches at the thread count ``embed_images`` gives it and at all cores; the CPU per
image of decode + preprocess and of the forward pass. ``--realistic-only`` runs just this part
(writes `<out>_realistic.json`). The headline (tiny model) numbers are the first block; this block
says which model it is.

Writes `.bench/results/embeddings.json`.
`--quick`: 16 records per domain, one round, batch 16 (seconds; what the test suite runs); the
realistic-model part runs with a one-layer "smoke" config on 32 images (the code path only).

--quality: random-init vs trained tiny SigLIP2 on the same data: training time, and for the
image space (all image domains) and the language text space the separation of the planted
near-duplicates (`mm_assets.embeddings.quality.separation_report`). Writes
`.bench/results/embeddings_quality.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mm_assets.embeddings import (build_tiny_siglip2, embed_images, embed_texts, iter_shard_images,  # noqa: E402
                                  planted_groups, separation_report, text_for_sample, train_tiny_siglip2,
                                  training_pairs, with_exact_duplicates)
from mm_assets.embeddings.inference import (available_cores, chunked, decode_and_preprocess,  # noqa: E402
                                            default_model_threads, default_workers, image_features,
                                            torch_threads)
from mm_assets.embeddings.model import TinySiglip2Spec  # noqa: E402
from mm_assets.embeddings.preprocess import make_preprocess  # noqa: E402

BENCH = REPO / ".bench" / "embeddings"
RESULTS = REPO / ".bench" / "results"
# --quick: the same measurements on 16 records per domain, in seconds (what the test suite runs)
QUICK = {"records_per_domain": 16, "batch_size": 16, "rounds": 1, "steps": 2, "train_batch_size": 8,
         "realistic_model": "smoke", "realistic_images": 32,
         "work": str(BENCH / "quick"), "out": str(RESULTS / "embeddings_quick.json")}
# The realistic-cost SigLIP2s (random weights; the image budget stays the project's: patch 16,
# 64 patches). "base": google/siglip2-base-patch16's vision tower sizes. "smoke": --quick only.
REALISTIC_SPECS = {
    "base": TinySiglip2Spec(hidden_size=768, intermediate_size=3072, num_attention_heads=12, vision_layers=12,
                            text_layers=1),
    "small": TinySiglip2Spec(hidden_size=384, intermediate_size=1536, num_attention_heads=6, vision_layers=12,
                             text_layers=1),
    "smoke": TinySiglip2Spec(hidden_size=64, intermediate_size=128, num_attention_heads=2, vision_layers=1,
                             text_layers=1),
}


def prepare_data(work: Path, seed: int = 0, records_per_domain: int | None = None) -> dict:
    """Demo-scale data (or `records_per_domain` per domain), generated and ingested once
    (cached under `work`)."""
    import polars as pl

    from mm_assets.sample_data import generate_sample_data
    from mm_assets.sources.ingest import ingest_domain
    from mm_assets.sources.samples_table import build_samples_table
    from mm_assets.sources.source_scan import SourceSpec, scan_sources
    from mm_assets.storage import Storage
    from mm_assets.taxonomy import DOMAINS

    data, ing = work / f"sample_data_demo_{seed}", work / f"ingest_demo_{seed}"
    done = ing / "bench_inputs.json"
    if done.exists():
        info = json.loads(done.read_text())
        info["samples"] = pl.read_parquet(info["samples"])
        return info
    if not (data / "truth" / "planted_truth.json").exists():
        # a shrunk data set gets shrunk eval sets too (this bench does not read them)
        generate_sample_data(data, scale="demo", seed=seed, _records_per_domain=records_per_domain,
                             _eval_items=records_per_domain)
    out = Storage(str(ing))
    manifest = scan_sources([SourceSpec("main", str(data / "main" / "mammoth_si.json"), str(data / "main" / "images"))],
                            str(data / "source_to_domain.json"), out.child("source"))
    shards, tables = {}, []
    for d in DOMAINS:
        m = ingest_domain(out.child("source"), manifest, d, out.child(f"raw/{d}"))
        shards[d] = [out.child(f"raw/{d}").uri(s["tar"]) for s in m["shards"]]
        tables.append(build_samples_table(out.child(f"raw/{d}"), m))
    pl.concat(tables).write_parquet(ing / "samples.parquet")
    info = {"shards": shards, "samples": str(ing / "samples.parquet"),
            "truth": str(data / "truth" / "planted_truth.json")}
    done.write_text(json.dumps(info))
    info["samples"] = pl.read_parquet(info["samples"])
    return info


# ----------------------------------------------------------------------------- throughput


def pure_model_rate(model, batches, threads: int) -> float:
    n = sum(len(b["pixel_values"]) for b in batches)
    with torch_threads(threads), torch.inference_mode():
        image_features(model, batches[0])            # warm-up
        t = time.perf_counter()
        for b in batches:
            image_features(model, b)
        return n / (time.perf_counter() - t)


def cpu_ms_per_image(pairs, prep, model, batch_size: int) -> dict:
    """Thread CPU time per image of decode + preprocess and of the forward pass at one torch
    thread (which runs in the calling thread), batch by batch (holding every preprocessed batch
    at once would add page faults to the decode time)."""
    decode = forward = 0.0
    with torch_threads(1), torch.inference_mode():
        image_features(model, decode_and_preprocess(prep, [b for _, b in pairs[:batch_size]]))
        for chunk in chunked(pairs, batch_size):
            t = time.thread_time()
            batch = decode_and_preprocess(prep, [b for _, b in chunk])
            t1 = time.thread_time()
            image_features(model, batch)
            decode, forward = decode + t1 - t, forward + time.thread_time() - t1
    decode, forward = decode / len(pairs) * 1e3, forward / len(pairs) * 1e3
    return {"decode_preprocess": decode, "forward_1_thread": forward, "decode_over_forward": decode / forward}


def throughput(info: dict, batch_size: int, rounds: int) -> dict:
    model, _, proc = build_tiny_siglip2(seed=0)
    shards = [s for d, ss in info["shards"].items() if d != "language" for s in ss]
    pairs = list(iter_shard_images(shards))
    n = len(pairs)
    prep = make_preprocess(proc)
    t = time.perf_counter()
    batches = [decode_and_preprocess(prep, [b for _, b in chunk]) for chunk in chunked(pairs, batch_size)]
    decode_rate = n / (time.perf_counter() - t)
    cores = available_cores()
    workers = default_workers(model)
    model_threads = default_model_threads(model)
    embed_images(model, proc, shards[:1], batch_size)          # warm-up
    runs = {k: [] for k in ("overlapped", "serial", "model_same_threads", "model_all_cores", "decode_only")}
    processes = []
    cpu = []
    for _ in range(rounds):
        t = time.perf_counter()
        ids, v = embed_images(model, proc, shards, batch_size)     # as the pipeline calls it
        runs["overlapped"].append(len(ids) / (time.perf_counter() - t))
        t = time.perf_counter()
        idsp, vp = embed_images(model, proc, shards, batch_size, decode_processes=True)
        processes.append(len(idsp) / (time.perf_counter() - t))
        assert idsp == ids and vp.tobytes() == v.tobytes()
        t = time.perf_counter()
        ids0, v0 = embed_images(model, proc, shards, batch_size, num_workers=0, num_threads=cores)
        runs["serial"].append(len(ids0) / (time.perf_counter() - t))
        assert ids0 == ids and np.abs(v0 - v).max() < 1e-5
        runs["model_same_threads"].append(pure_model_rate(model, batches, model_threads))
        runs["model_all_cores"].append(pure_model_rate(model, batches, cores))
        t = time.perf_counter()
        for chunk in chunked(pairs, batch_size):
            decode_and_preprocess(prep, [b for _, b in chunk])
        runs["decode_only"].append(n / (time.perf_counter() - t))
        cpu.append(cpu_ms_per_image(pairs, prep, model, batch_size))
    med = {k: statistics.median(v) for k, v in runs.items()}
    cpu_med = {k: statistics.median(c[k] for c in cpu) for k in cpu[0]}
    return {
        "images": n, "batch_size": batch_size, "rounds": rounds, "cores": cores,
        "model_threads_in_embed_images": model_threads, "decode_workers": workers,
        "images_per_s": med, "runs": runs, "first_decode_rate": decode_rate,
        "ratio_overlapped_vs_model_same_threads": med["overlapped"] / med["model_same_threads"],
        "ratio_overlapped_vs_model_all_cores": med["overlapped"] / med["model_all_cores"],
        "ratio_serial_vs_model_all_cores": med["serial"] / med["model_all_cores"],
        "decode_processes": {"images_per_s": statistics.median(processes), "runs": processes,
                             "ratio_vs_model_same_threads": statistics.median(processes) / med["model_same_threads"]},
        # with every core busy, the pipeline's rate is at most cores / (decode + forward CPU per image)
        "cpu_ms_per_image": cpu_med,
        "bound_ratio_vs_model_same_threads": min(1.0, cores / (cpu_med["decode_preprocess"]
                                                               + cpu_med["forward_1_thread"])
                                                 * cpu_med["forward_1_thread"] / model_threads),
        "model": {"params": sum(p.numel() for p in model.parameters()),
                  "max_num_patches": proc.max_num_patches, "patch_size": proc.patch_size},
    }


def realistic_throughput(info: dict, size: str, n_images: int, batch_size: int, rounds: int) -> dict:
    """The overlapped-vs-model-only comparison with a SigLIP2 of realistic per-image cost
    (`REALISTIC_SPECS[size]`, random weights) on the first `n_images` images of the shards."""
    from itertools import islice

    spec = REALISTIC_SPECS[size]
    load0 = os.getloadavg()
    model, _, proc = build_tiny_siglip2(seed=0, spec=spec)
    shards = [s for d, ss in info["shards"].items() if d != "language" for s in ss]
    pairs = list(islice(iter_shard_images(shards), n_images))
    n = len(pairs)

    def source():       # read from the shards inside the call, as the pipeline's shards are
        return islice(iter_shard_images(shards), n)

    prep = make_preprocess(proc)
    batches = [decode_and_preprocess(prep, [b for _, b in chunk]) for chunk in chunked(pairs, batch_size)]
    cores = available_cores()
    workers = default_workers(model)
    model_threads = default_model_threads(model)
    embed_images(model, proc, pairs[:batch_size], batch_size)          # warm-up
    runs = {k: [] for k in ("overlapped", "serial", "model_same_threads", "model_all_cores")}
    for _ in range(rounds):
        t = time.perf_counter()
        ids, v = embed_images(model, proc, source(), batch_size)      # as the pipeline calls it
        runs["overlapped"].append(len(ids) / (time.perf_counter() - t))
        assert len(ids) == n
        t = time.perf_counter()
        ids0, _ = embed_images(model, proc, source(), batch_size, num_workers=0, num_threads=cores)
        runs["serial"].append(len(ids0) / (time.perf_counter() - t))
        assert ids0 == ids
        runs["model_same_threads"].append(pure_model_rate(model, batches, model_threads))
        runs["model_all_cores"].append(pure_model_rate(model, batches, cores))
    cpu = cpu_ms_per_image(pairs[:2 * batch_size], prep, model, batch_size)
    med = {k: statistics.median(v) for k, v in runs.items()}
    vision = model.config.vision_config
    return {
        "size": size, "images": n, "batch_size": batch_size, "rounds": rounds, "cores": cores,
        "model_threads_in_embed_images": model_threads, "decode_workers": workers,
        "images_per_s": med, "runs": runs,
        "ratio_overlapped_vs_model_same_threads": med["overlapped"] / med["model_same_threads"],
        "ratio_overlapped_vs_model_all_cores": med["overlapped"] / med["model_all_cores"],
        "ratio_serial_vs_model_all_cores": med["serial"] / med["model_all_cores"],
        # round by round (the variants of one round saw about the same background load)
        "ratios_by_round": {"overlapped_vs_model_same_threads": [o / m for o, m in zip(runs["overlapped"],
                                                                                       runs["model_same_threads"])],
                            "overlapped_vs_model_all_cores": [o / m for o, m in zip(runs["overlapped"],
                                                                                    runs["model_all_cores"])]},
        "cpu_ms_per_image": cpu,
        "bound_ratio_vs_model_same_threads": min(1.0, cores / (cpu["decode_preprocess"] + cpu["forward_1_thread"])
                                                 * cpu["forward_1_thread"] / model_threads),
        "loadavg_before": load0, "loadavg_after": os.getloadavg(),
        "model": {"random_init": True, "vision_params": sum(p.numel() for p in model.vision_model.parameters()),
                  "hidden_size": vision.hidden_size, "num_hidden_layers": vision.num_hidden_layers,
                  "num_attention_heads": vision.num_attention_heads,
                  "intermediate_size": vision.intermediate_size, "patch_size": proc.patch_size,
                  "max_num_patches": proc.max_num_patches},
    }


def print_realistic(r: dict) -> None:
    m, ips = r["model"], r["images_per_s"]
    print(f"REALISTIC-COST MODEL ({r['size']}: random-init SigLIP2 vision tower, hidden {m['hidden_size']}, "
          f"{m['num_hidden_layers']} layers, {m['num_attention_heads']} heads, intermediate {m['intermediate_size']}, "
          f"{m['vision_params'] / 1e6:.1f} M vision params, patch {m['patch_size']}, {m['max_num_patches']} patches; "
          "NOT the project's embedder)")
    print(f"  embed_images on the first {r['images']} images, batch {r['batch_size']}, {r['cores']} cores, median of "
          f"{r['rounds']} rounds (load {r['loadavg_before'][0]:.1f} -> {r['loadavg_after'][0]:.1f}):")
    print(f"  overlapped ({r['decode_workers']} decode worker(s), {r['model_threads_in_embed_images']} torch "
          f"thread(s)): {ips['overlapped']:.1f} img/s")
    print(f"  pure model, same threads: {ips['model_same_threads']:.1f} img/s   ratio "
          f"{r['ratio_overlapped_vs_model_same_threads']:.2f}")
    print(f"  pure model, all cores:    {ips['model_all_cores']:.1f} img/s   ratio "
          f"{r['ratio_overlapped_vs_model_all_cores']:.2f}")
    print(f"  serial (no overlap, all cores): {ips['serial']:.1f} img/s   ratio vs all cores "
          f"{r['ratio_serial_vs_model_all_cores']:.2f}")
    rr = r["ratios_by_round"]
    print("  ratios round by round: vs same threads "
          + ", ".join(f"{x:.2f}" for x in rr["overlapped_vs_model_same_threads"]) + "; vs all cores "
          + ", ".join(f"{x:.2f}" for x in rr["overlapped_vs_model_all_cores"]))
    c = r["cpu_ms_per_image"]
    print(f"  CPU per image: decode+preprocess {c['decode_preprocess']:.2f} ms, forward (1 thread) "
          f"{c['forward_1_thread']:.2f} ms -> at most {r['bound_ratio_vs_model_same_threads']:.2f} of the "
          "model's rate at its threads on these cores")


def perplexity_throughput(info: dict, work: Path, rounds: int, chunk_size: int = 256) -> dict:
    """Samples/s of ``score_with_model`` (encoding pipelined, and inline) and of the model alone
    on the same samples encoded beforehand, at the same torch threads (score_shards' default)."""
    from mm_assets.perplexity.reference import shard_texts
    from mm_assets.perplexity.score import context_length, encode_chunk, nll_of_samples, pad_token_id, \
        score_with_model
    from mm_assets.training.data import iter_shard_records
    from mm_assets.training.trainer import load_model_and_processor
    from mm_assets.vlm.tiny_llava import build_tiny_llava
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer

    shards = [str(s) for d in ("general", "language") for s in info["shards"][d]]
    model_dir = work / "perplexity_tiny_llava"
    if not (model_dir / "config.json").exists():
        build_tiny_llava(model_dir, train_bpe_tokenizer(shard_texts(shards), vocab_size=2048), seed=0)
    model, processor = load_model_and_processor(model_dir)
    model.eval()
    threads = torch.get_num_threads()
    chunks = [encode_chunk(processor, context_length(model), c)
              for c in chunked(iter_shard_records(shards), chunk_size)]
    n = sum(len(rows) for rows, _, _ in chunks)
    pad_id = pad_token_id(processor)
    score_with_model(model, processor, shards[:1], chunk_size=chunk_size)      # warm-up
    runs = {"pipelined": [], "inline": [], "model_only": []}
    for _ in range(rounds):
        t = time.perf_counter()
        piped = score_with_model(model, processor, shards, chunk_size=chunk_size, num_workers=1)
        runs["pipelined"].append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        inline = score_with_model(model, processor, shards, chunk_size=chunk_size, num_workers=0)
        runs["inline"].append(n / (time.perf_counter() - t))
        assert piped.equals(inline)
        t = time.perf_counter()
        for _, encoded, _ in chunks:
            nll_of_samples(model, encoded, pad_id)
        runs["model_only"].append(n / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"samples": n, "scored": int(piped["nll"].is_not_null().sum()), "rounds": rounds,
            "torch_threads": threads, "samples_per_s": med, "runs": runs,
            "ratio_pipelined_vs_model_only": med["pipelined"] / med["model_only"],
            "ratio_inline_vs_model_only": med["inline"] / med["model_only"]}


# ----------------------------------------------------------------------------- quality


def space_reports(model, tok, proc, info, truth) -> dict:
    df = info["samples"].sort("ordinal")
    shards = [s for d, ss in info["shards"].items() if d != "language" for s in ss]
    ids, v = embed_images(model, proc, shards, 64)
    pos = {s: i for i, s in enumerate(ids)}
    img = df.filter(df["sample_id"].is_in(ids))
    img_ids = img["sample_id"].to_list()
    v = v[[pos[s] for s in img_ids]]
    groups = planted_groups(truth, df)
    lang = df.filter(df["domain"] == "language")
    ltexts = [text_for_sample(q, a) for q, a in zip(lang["question"], lang["answer"])]
    tv = embed_texts(model, tok, ltexts)
    lgroups = planted_groups(truth, df, domains=["language"])
    return {
        "image": separation_report(img_ids, v, groups),
        "language": separation_report(lang["sample_id"].to_list(), tv, lgroups),
        # identical content the generator produced by chance (not planted) counted as duplicates
        "image_with_exact": separation_report(img_ids, v, with_exact_duplicates(groups, img_ids,
                                                                                img["image_sha256"].to_list())),
        "language_with_exact": separation_report(lang["sample_id"].to_list(), tv,
                                                 with_exact_duplicates(lgroups, lang["sample_id"].to_list(), ltexts)),
    }


def quality(info: dict, work: Path, steps: int, batch_size: int, seed: int, threads: int | None) -> dict:
    truth = json.loads(Path(info["truth"]).read_text())
    shards = [s for ss in info["shards"].values() for s in ss]
    pairs = training_pairs(shards)
    texts = [t for _, t in pairs]
    rnd = build_tiny_siglip2(seed=seed, texts=texts)
    from mm_assets.embeddings.train import TrainConfig
    cfg = TrainConfig() if threads is None else TrainConfig(num_threads=threads)
    load0 = os.getloadavg()
    res = train_tiny_siglip2(pairs, work / "tiny_siglip2_trained", steps=steps, batch_size=batch_size, seed=seed,
                             config=cfg, log_every=50)
    load1 = os.getloadavg()
    out = {"train": {"seconds": res["seconds"], "data_seconds": res["data_seconds"], "steps": res["steps"],
                     "batch_size": batch_size, "images": res["images"], "texts": res["texts"],
                     "num_threads": res["config"]["num_threads"], "loadavg_before": load0, "loadavg_after": load1,
                     "loss_first": res["loss_first"], "loss_last": res["loss_last"], "path": res["path"]},
           "random": space_reports(*rnd, info, truth),
           "trained": space_reports(res["model"], res["tokenizer"], res["image_processor"], info, truth)}
    return out


def _line(name, r):
    rm = r["removal"]
    return (f"  {name:<22} frac>p99(nn) {r['frac_dup_above_p99']:.3f}   removal@planted P {rm['precision']:.3f} "
            f"R {rm['recall']:.3f}   (p99 nn {r['nearest_nondup']['p99']:.4f}; recall by kind "
            + ", ".join(f"{k} {v:.2f}" for k, v in rm["recall_by_kind"].items()) + ")")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes, seconds (what the test suite runs)")
    ap.add_argument("--records-per-domain", type=int, default=None, help="default: the demo scale's")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quality", action="store_true", help="also train and report near-duplicate separation")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: TrainConfig's)")
    ap.add_argument("--train-batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads while training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(BENCH), help="where the data is generated and cached")
    ap.add_argument("--out", default=str(RESULTS / "embeddings.json"))
    ap.add_argument("--realistic-model", choices=["base", "small", "smoke", "off"], default="base",
                    help="second, separately reported measurement with a random-init SigLIP2 of realistic "
                         "per-image cost (base: siglip2-base-patch16's vision tower sizes; --quick: smoke)")
    ap.add_argument("--realistic-images", type=int, default=256)
    ap.add_argument("--realistic-only", action="store_true",
                    help="run only the realistic-model measurement (writes <out>_realistic.json)")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    args = ap.parse_args()
    work = Path(args.work)
    info = prepare_data(work, args.seed, args.records_per_domain)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
               "loadavg": os.getloadavg()}
    if args.realistic_only:
        if args.realistic_model == "off":
            ap.error("--realistic-only needs a --realistic-model")
        r = realistic_throughput(info, args.realistic_model, args.realistic_images, args.batch_size, args.rounds)
        r["machine"] = machine
        print_realistic(r)
        rout = Path(args.out).with_name(f"{Path(args.out).stem}_realistic.json")
        rout.parent.mkdir(parents=True, exist_ok=True)
        rout.write_text(json.dumps(r, indent=2))
        return 0
    res = throughput(info, args.batch_size, args.rounds)
    res["perplexity"] = perplexity_throughput(info, work, args.rounds)
    if args.realistic_model != "off":
        res["realistic_model"] = realistic_throughput(info, args.realistic_model, args.realistic_images,
                                                      args.batch_size, args.rounds)
    res["machine"] = machine
    ips = res["images_per_s"]
    print(f"TINY MODEL (the project's embedder, {res['model']['params'] / 1e6:.2f} M params): embed_images on "
          f"{res['images']} demo images, batch {res['batch_size']}, {res['cores']} cores, "
          f"median of {res['rounds']} rounds:")
    print(f"  overlapped ({res['decode_workers']} decode worker(s), {res['model_threads_in_embed_images']} torch "
          "thread(s)): "
          f"{ips['overlapped']:.0f} img/s")
    print(f"  pure model, same threads: {ips['model_same_threads']:.0f} img/s   ratio "
          f"{res['ratio_overlapped_vs_model_same_threads']:.2f}")
    print(f"  pure model, all cores:    {ips['model_all_cores']:.0f} img/s   ratio "
          f"{res['ratio_overlapped_vs_model_all_cores']:.2f}")
    print(f"  serial (no overlap, all cores): {ips['serial']:.0f} img/s   decode+preprocess alone: "
          f"{ips['decode_only']:.0f} img/s")
    dp = res["decode_processes"]
    print(f"  overlapped with decode processes: {dp['images_per_s']:.0f} img/s   ratio vs same threads "
          f"{dp['ratio_vs_model_same_threads']:.2f}")
    c = res["cpu_ms_per_image"]
    print(f"  CPU per image: decode+preprocess {c['decode_preprocess']:.2f} ms, forward (1 thread) "
          f"{c['forward_1_thread']:.2f} ms -> at most {res['bound_ratio_vs_model_same_threads']:.2f} of the "
          "model's rate at its threads on these cores")
    pp = res["perplexity"]
    sps = pp["samples_per_s"]
    print(f"perplexity scoring on {pp['samples']} samples, {pp['torch_threads']} torch thread(s): pipelined "
          f"{sps['pipelined']:.0f}/s, inline {sps['inline']:.0f}/s, model only {sps['model_only']:.0f}/s   ratio "
          f"{pp['ratio_pipelined_vs_model_only']:.2f} (inline {pp['ratio_inline_vs_model_only']:.2f})")
    if "realistic_model" in res:
        print_realistic(res["realistic_model"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    if args.quality:
        steps = args.steps
        if steps is None:
            from mm_assets.embeddings.train import TrainConfig
            steps = TrainConfig().steps
        q = quality(info, work, steps, args.train_batch_size, args.seed, args.threads)
        q["machine"] = machine
        t = q["train"]
        print(f"training: {t['steps']} steps x {t['batch_size']} on {t['images']} images + {t['texts']} texts, "
              f"{t['seconds']:.1f} s ({t['num_threads']} threads; load {t['loadavg_before'][0]:.1f} -> "
              f"{t['loadavg_after'][0]:.1f})")
        for which in ("random", "trained"):
            print(which)
            for space in ("image", "language", "image_with_exact", "language_with_exact"):
                print(_line(space, q[which][space]))
        qout = Path(args.out).with_name(f"{Path(args.out).stem}_quality.json")
        qout.write_text(json.dumps(q, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
