"""`make bench` part: training tokens/s with sequence packing vs padding, same model, data, run.

One process builds a tiny LLaVA (SigLIP tower + 2-layer Llama, BPE tokenizer) and writes fake
curated WebDataset shards whose conversations vary in length like instruction data does
(short answers mostly, a long tail of long answers and multi-turn chats; 2/3 image rows with
16 image tokens each). Then it trains one epoch over the same shards with

* packing: first-fit rows of ``max_len`` tokens, ``slots // max_len`` rows per micro-batch,
  position ids reset per sample, each sample attending alone (the trainer's segment attention);
* packing, dense mask: the headline rows attending over the whole row through the
  block-diagonal causal 4D mask (the masked-out blocks computed too);
* padding: one sample per row, right padding, a micro-batch of ``slots / mean sample length``
  samples (the same nominal number of token slots),

alternating A B C C B A (``--rounds`` times) so drift in machine load hits every mode alike;
packed row lengths ``--max-lens`` (default 512 and 256), every mode with the same nominal
token slots per micro-batch (``--slots``).
Throughput = non-padding tokens (context + targets) / the summed step time (collation,
forward, backward, optimizer step; data loading and checkpointing excluded). Also reported:
the fraction of row slots that are padding, steps and mean loss.

Writes `.bench/results/training.json` and prints the packing/padding ratios. The tiny model's
hidden size (128) makes attention a large share of its FLOPs, and the CPU attention kernels
compute the masked-out cross-sample blocks of a packed row too (dense 4D mask), so a long row
pays ``max_len**2`` attention for ``sum(len_i**2)`` useful work: the ratio on this model is a
lower bound for real VLM sizes, where the MLP and projections dominate.

`--quick`: 16 samples, rows of 256 and 128, 512 slots, one round (seconds; what the test suite runs).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

WORDS = ("red blue green square circle dots chart value total number text picture many how what is the a of in "
         "colour shown there are three two one four five six bar line axis label year sales percent average "
         "highest lowest between compare left right top bottom count answer because").split()
RESULTS = REPO / ".bench" / "results"
QUICK = {"samples": 16, "max_lens": "256,128", "slots": 512, "rounds": 1, "out": str(RESULTS / "training_quick.json")}


def _image(rng: random.Random) -> tuple[str, bytes]:
    from PIL import Image

    w, h = rng.randint(32, 160), rng.randint(32, 160)
    arr = np.random.default_rng(rng.randint(0, 2**31)).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "png", buf.getvalue()


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(1, n)))


def fake_curated(n: int, seed: int) -> list[tuple[str, dict[str, bytes]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        with_image = rng.random() < 2 / 3
        turns = 1 if rng.random() < 0.75 else rng.randint(2, 3)
        conv = []
        for t in range(turns):
            q = _words(rng, rng.randint(4, 20)) + "?"
            if with_image and t == 0:
                q = "<image>\n" + q
            # answers: mostly short, lognormal tail (like instruction data)
            a = _words(rng, int(min(150, rng.lognormvariate(2.0, 1.0))))
            conv += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
        key = f"b{i:06d}"
        fields = {"json": json.dumps({"sample_id": key, "conversations": conv}).encode()}
        if with_image:
            ext, data = _image(rng)
            fields[ext] = data
        out.append((key, fields))
    return out


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes, seconds (what the test suite runs)")
    ap.add_argument("--samples", type=int, default=320)
    ap.add_argument("--max-lens", default="512,256", help="packed row lengths to measure (first = headline)")
    ap.add_argument("--slots", type=int, default=1024, help="nominal token slots per micro-batch, every mode")
    ap.add_argument("--rounds", type=int, default=2, help="A B C C B A repetitions")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", default=None, help="shards, model and checkpoints (default: a new temporary directory)")
    ap.add_argument("--out", default=str(RESULTS / "training.json"))
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    args = ap.parse_args()

    import torch

    from mm_assets.training.data import load_dataset
    from mm_assets.training.trainer import TrainConfig, load_model_and_processor, train
    from mm_assets.vlm.tiny_llava import build_tiny_llava
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer
    from mm_assets.webdataset_io import write_shard

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    max_lens = [int(x) for x in args.max_lens.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="mm-bench-training-"))
    work.mkdir(parents=True, exist_ok=True)
    samples = fake_curated(args.samples, seed=0)
    shards = []
    for j in range(0, len(samples), 100):
        p = work / f"shard-{j // 100:06d}.tar"
        with open(p, "wb") as f:
            write_shard(f, samples[j:j + 100])
        shards.append(p)
    tok = train_bpe_tokenizer([" ".join(WORDS)] * 8, vocab_size=1024)
    base = build_tiny_llava(work / "base", tok, seed=0)
    _, processor = load_model_and_processor(base)
    encoded, skipped = load_dataset(shards, processor, max_len=max(max_lens))
    lengths = [s.length for s in encoded]
    mean_len = float(np.mean(lengths))
    pad_batch = max(1, round(args.slots / mean_len))

    common = dict(training_run="bench", epochs=1, lr=1e-3, schedule="cosine", warmup=2, seed=0, grad_accum=1,
                  save_each_epoch=False)
    configs = {f"packing_{m}": TrainConfig(packing=True, max_len=m, batch_size=max(1, args.slots // m), **common)
               for m in max_lens}
    # the same packed rows attending over the whole row through the 4D block mask (the trainer's
    # path before segment attention): what attending one sample at a time saves
    configs[f"packing_{max_lens[0]}_dense_mask"] = TrainConfig(
        packing=True, max_len=max_lens[0], attn_implementation="sdpa", batch_size=max(1, args.slots // max_lens[0]),
        **common)
    configs["padding"] = TrainConfig(packing=False, max_len=max(max_lens), batch_size=pad_batch, **common)
    modes = list(configs)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    order = (modes + modes[::-1]) * args.rounds
    for i, mode in enumerate(order):
        logs: list[dict] = []
        t0 = time.perf_counter()
        train(configs[mode], base, shards, lambda epoch, step, i=i, m=mode: work / f"ck-{m}-{i}-{step}", logs.append)
        wall = time.perf_counter() - t0
        step_time = sum(d["step_time_s"] for d in logs)
        tokens, slots = sum(d["tokens"] for d in logs), sum(d["padded_tokens"] for d in logs)
        runs[mode].append({"steps": len(logs), "tokens": tokens, "target_tokens": sum(d["target_tokens"] for d in logs),
                           "slots": slots, "step_time_s": step_time, "wall_s": wall,
                           "mean_loss": float(np.mean([d["loss"] for d in logs])), "tokens_per_s": tokens / step_time})
        print(f"{mode:12s} run {i}: {len(logs)} steps, {tokens / step_time:,.0f} tokens/s, "
              f"padding {1 - tokens / slots:.1%}", flush=True)

    def agg(rs):
        tokens, t, slots = sum(r["tokens"] for r in rs), sum(r["step_time_s"] for r in rs), sum(r["slots"] for r in rs)
        per_run = [r["tokens_per_s"] for r in rs]
        return {"tokens_per_s": tokens / t, "tokens_per_s_min": min(per_run), "tokens_per_s_max": max(per_run),
                "padding_fraction": 1 - tokens / slots, "steps_per_epoch": rs[0]["steps"],
                "tokens_per_epoch": rs[0]["tokens"], "mean_loss": float(np.mean([r["mean_loss"] for r in rs])),
                "runs": rs}

    res = {
        "bench": "training tokens/s, packing vs padding (same model, data, process)",
        "throughput": "non-padding (context + target) tokens / summed optimizer-step time "
                      "(collate + forward + backward + step)",
        "device": "cpu", "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "machine": platform.machine(), "torch": torch.__version__,
        "attn_implementation": {m: c.attn_implementation for m, c in configs.items()},
        "model": "tiny LLaVA (SigLIP 2x64 tower, 2-layer Llama d=128, 16 image tokens), fp32",
        "samples": len(encoded), "skipped": dict(skipped),
        "image_rows": sum(s.pixel_values is not None for s in encoded),
        "sample_tokens": {"mean": mean_len, "median": float(np.median(lengths)), "max": int(max(lengths)),
                          "min": int(min(lengths))},
        "configs": {m: {"packing": c.packing, "max_len": c.max_len, "batch_size": c.batch_size}
                    for m, c in configs.items()},
        "order": order,
        "modes": {m: agg(runs[m]) for m in modes},
    }
    head = f"packing_{max_lens[0]}"
    res["headline"] = head
    res["ratio_packing_over_padding"] = res["modes"][head]["tokens_per_s"] / res["modes"]["padding"]["tokens_per_s"]
    res["ratios"] = {m: res["modes"][m]["tokens_per_s"] / res["modes"]["padding"]["tokens_per_s"]
                     for m in modes if m != "padding"}
    res["ratio_segment_attention_over_dense_mask"] = (res["modes"][head]["tokens_per_s"]
                                                      / res["modes"][f"{head}_dense_mask"]["tokens_per_s"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print()
    for m in modes:
        a = res["modes"][m]
        print(f"{m:12s} {a['tokens_per_s']:>9,.0f} tokens/s  (runs {a['tokens_per_s_min']:,.0f}..{a['tokens_per_s_max']:,.0f}; "
              f"padding fraction {a['padding_fraction']:.1%}, {a['steps_per_epoch']} steps/epoch)")
    for m, r in res["ratios"].items():
        print(f"ratio {m}/padding = {r:.2f}x")
    print(f"ratio {head} (one sample at a time) / {head}_dense_mask = "
          f"{res['ratio_segment_attention_over_dense_mask']:.2f}x")
    print(f"load average before {load_before[0]:.1f}, after {res['load_average_after'][0]:.1f} "
          f"({os.cpu_count()} CPUs) -> {out}")
    return res


if __name__ == "__main__":
    main()
