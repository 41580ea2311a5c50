"""`make bench` part: evaluation generation throughput of the HF back end, batch 1 vs batched.

Builds the tiny LLaVA (`mm_assets.vlm.build_tiny_llava`), then generates greedily for N=64
requests (3/4 with random PIL images of mixed sizes and modes, 1/4 text-only; prompts of 1 to
~40 words; max_new_tokens=16) with `HFBackend` at batch size 1, 8 and 32: the same loaded
model, in one process, rounds alternating so every batch size sees the same background load.
Reports items/s (median over rounds), the ratio batched / batch-1, and whether every batched
output equals the batch-1 output (left padding must not change greedy results). Writes
`.bench/results/eval_backends.json`. `--quick`: 8 requests at batch 1 and 4, one round (seconds;
what the test suite runs).
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
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mm_assets.evaluation.backends import GenerationRequest, HFBackend  # noqa: E402
from mm_assets.vlm import TinyLlavaSpec, build_tiny_llava, train_bpe_tokenizer  # noqa: E402

BENCH = REPO / ".bench" / "eval_backends"
RESULTS = REPO / ".bench" / "results"
QUICK = {"n": 8, "max_new_tokens": 4, "batch_sizes": "1,4", "rounds": 1, "work": str(BENCH / "quick"),
         "out": str(RESULTS / "eval_backends_quick.json")}
WORDS = ("what is the value of the red bar in chart how many dogs are there picture describe image read text "
         "which colour largest slice total answer with a single number count objects left right top bottom").split()


def make_requests(n: int, seed: int = 0) -> list[GenerationRequest]:
    rs = np.random.RandomState(seed)
    reqs = []
    for i in range(n):
        k = int(rs.randint(1, 41))
        prompt = " ".join(WORDS[j] for j in rs.randint(0, len(WORDS), k)).capitalize() + "?"
        image = None
        if i % 4 != 3:
            h, w = int(rs.randint(16, 400)), int(rs.randint(16, 400))
            image = Image.fromarray(rs.randint(0, 256, (h, w, 3), dtype=np.uint8)).convert(
                ("RGB", "RGB", "L", "RGBA")[i % 4])
        reqs.append(GenerationRequest(prompt, image))
    return reqs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes, seconds (what the test suite runs)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(BENCH), help="where the tiny LLaVA is written")
    ap.add_argument("--out", default=str(RESULTS / "eval_backends.json"))
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    args = ap.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    reqs = make_requests(args.n, args.seed)
    t = time.perf_counter()
    tok = train_bpe_tokenizer([r.prompt for r in reqs] + WORDS, vocab_size=1024)
    ckpt = build_tiny_llava(Path(args.work) / "tiny_llava", tok, seed=args.seed,
                            spec=TinyLlavaSpec(image_size=args.image_size))
    build_s = time.perf_counter() - t
    backend = HFBackend(str(ckpt), batch_size=1)
    backend.generate(reqs[:4], args.max_new_tokens)                       # warm-up

    runs: dict[int, list[float]] = {b: [] for b in sizes}
    outputs: dict[int, list[str]] = {}
    for _ in range(args.rounds):
        for b in sizes:
            backend.batch_size = b
            t = time.perf_counter()
            out = backend.generate(reqs, args.max_new_tokens)
            runs[b].append(len(reqs) / (time.perf_counter() - t))
            outputs.setdefault(b, out)
    base = sizes[0]
    med = {b: statistics.median(v) for b, v in runs.items()}
    out_tokens = [len(ids) for ids in tok(outputs[base], add_special_tokens=False)["input_ids"]]
    res = {
        "n": len(reqs), "with_image": sum(r.image is not None for r in reqs), "max_new_tokens": args.max_new_tokens,
        "rounds": args.rounds, "build_seconds": build_s, "checkpoint": str(ckpt),
        "items_per_s": {str(b): med[b] for b in sizes},
        "runs": {str(b): v for b, v in runs.items()},
        "ratio_vs_batch_1": {str(b): med[b] / med[base] for b in sizes},
        "batched_equals_batch_1": {str(b): outputs[b] == outputs[base] for b in sizes},
        "mean_output_tokens_approx": float(np.mean(out_tokens)),
        "model": {"params": sum(p.numel() for p in backend.model.parameters()), "image_size": args.image_size,
                  "image_tokens": (args.image_size // 16) ** 2, "vocab": len(tok)},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__, "loadavg": os.getloadavg()},
    }
    backend.close()
    print(f"HF back end, tiny LLaVA ({res['model']['params']:,} params, {res['model']['image_tokens']} image tokens), "
          f"{res['n']} requests ({res['with_image']} with images), max_new_tokens {args.max_new_tokens}, "
          f"median of {args.rounds} rounds, {res['machine']['torch_threads']} torch threads:")
    for b in sizes:
        print(f"  batch {b:>3}: {med[b]:7.1f} items/s   ratio vs batch {base}: {med[b] / med[base]:5.2f}   "
              f"outputs equal batch {base}: {res['batched_equals_batch_1'][str(b)]}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    return 0 if all(res["batched_equals_batch_1"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
