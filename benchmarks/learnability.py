"""Can the tiny LLaVA learn a benchmark's look-alike task at all? (the measurements behind the
training defaults; README, "The curation study").

Trains the project's tiny LLaVA (tokenizer, model, packing and loss of `mm_assets`) directly on
look-alike items in the benchmark's own prompt and answer format — drawn by the eval-set
generator with another seed, so never an eval item — then scores it with the project's eval
runner on the eval set of seed 0. No curation, no Dagster: it isolates the model and the
optimisation from the data pipeline.

    python benchmarks/learnability.py --bench countbench --n 4000 --epochs 3 --lr 1e-3 \\
        --image-size 128 --tower .demo/artifacts/embedder/<version> --freeze

`--tower`: a SigLIP2 embedder directory (the demo's `embedder` asset) whose vision tower the
model uses, or `random` (a random SigLIP tower with `--patch`). Prints the loss every tenth of
the run, then the score per benchmark: untrained, trained, and trained with every eval item
shown another item's image (the image-swap control). `--refusal-rate R` replaces a share R of
the training answers by a refusal, as the study's planted refusals do. `--quick`: CountBench and
ChartQA, 8 items each, one epoch, 64 px, 4 eval items (seconds; what the test suite runs);
`--out` also writes the result.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mm_assets.evaluation.backends.hf import HFBackend  # noqa: E402
from mm_assets.evaluation.benchmarks import BENCHMARKS, get  # noqa: E402
from mm_assets.evaluation.image_swap import swap_images  # noqa: E402
from mm_assets.evaluation.runner import evaluate  # noqa: E402
from mm_assets.sample_data import eval_sets  # noqa: E402
from mm_assets.sample_data.conversations import REFUSALS  # noqa: E402
from mm_assets.sources.eval_sets import load_eval_set  # noqa: E402
from mm_assets.storage import Storage  # noqa: E402
from mm_assets.training.data import encode_conversation  # noqa: E402
from mm_assets.training.packing import collate_packed, first_fit  # noqa: E402
from mm_assets.training.schedule import lr_at  # noqa: E402
from mm_assets.training.trainer import accumulate_gradients  # noqa: E402
from mm_assets.vlm.tiny_llava import (  # noqa: E402
    TinyLlavaSpec,
    build_tiny_llava,
    load_llava,
    save_llava,
)
from mm_assets.vlm.tokenizer import train_bpe_tokenizer  # noqa: E402
from mm_assets.vlm.tower_pretraining import pretrain_tower  # noqa: E402

TRAIN_SEED = 1000   # the eval sets use seed 0: other draws
QUICK = {"bench": "countbench,chartqa", "n": 8, "epochs": 1, "image_size": 64, "eval_items": 4}


def training_pairs(bench: str, n: int) -> list[tuple[str, str, bytes]]:
    """(prompt as the benchmark writes it, the answer, image) for `n` look-alike items."""
    b = get(bench)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        eval_sets.write_eval_set(bench, n, TRAIN_SEED, tmp)
        items, _ = load_eval_set(Storage(tmp), bench)
        for row, item in enumerate(items.to_dicts()):
            if bench == "pixmo_points":   # Molmo's point format; "not in the image" for no target
                drawn = eval_sets.eval_item(bench, row, TRAIN_SEED)
                answer = drawn.answer if drawn.row["points"] else "This isn't in the image."
            elif bench == "countbench":
                answer = str(item["number"])
            else:
                answer = str(item["answers"][0])
            out.append((b.doc_to_text(item), answer, bytes(item["image"])))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds (what the test suite runs)")
    p.add_argument("--out", default=None, help="also write the result (JSON) here")
    p.add_argument("--bench", default=",".join(BENCHMARKS), help="comma-separated benchmarks")
    p.add_argument("--n", type=int, default=4000, help="training items per benchmark")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--patch", type=int, default=16, help="random tower only")
    p.add_argument("--text-hidden", type=int, default=TinyLlavaSpec.text_hidden_size)
    p.add_argument("--text-layers", type=int, default=TinyLlavaSpec.text_layers)
    p.add_argument("--tower", default="random", help="'random' or a SigLIP2 embedder directory")
    p.add_argument("--freeze", action="store_true", help="freeze the vision tower")
    p.add_argument("--tower-scenes", type=int, default=0,
                   help="pre-train the tower densely on this many grounding scenes first (the base model's step)")
    p.add_argument("--tower-epochs", type=int, default=3)
    p.add_argument("--tower-state", default=None,
                   help="keep the pre-trained tower in this file, and load it from there when it exists")
    p.add_argument("--eval-items", type=int, default=200)
    p.add_argument("--rows", type=int, default=8, help="packed rows of 512 tokens per step")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--refusal-rate", type=float, default=0.0,
                   help="share of training answers replaced by a refusal (the study's planted refusals)")
    if p.parse_known_args()[0].quick:
        p.set_defaults(**QUICK)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    benches = args.bench.split(",")
    rng = random.Random(0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = [x for b in benches for x in training_pairs(b, args.n)]
        refusing = random.Random(1)
        pairs = [(q, refusing.choice(REFUSALS) if refusing.random() < args.refusal_rate else a, img)
                 for q, a, img in pairs]
        tokenizer = train_bpe_tokenizer([f"{q} {a}" for q, a, _ in pairs[:5000]])
        vision_from = None
        if args.tower != "random":
            from mm_assets.embeddings.model import load_embedder
            vision_from = load_embedder(args.tower)[0]
        spec = TinyLlavaSpec(image_size=args.image_size, patch_size=args.patch,
                             text_hidden_size=args.text_hidden, text_intermediate_size=2 * args.text_hidden,
                             text_layers=args.text_layers)
        tower_report = {}

        def pretrain(tower):
            if args.tower_state and Path(args.tower_state).exists():     # a tower pre-trained by an earlier call
                tower.load_state_dict(torch.load(args.tower_state))
                tower_report.update(json.loads(Path(args.tower_state + ".json").read_text()))
            elif args.tower_scenes:
                tower_report.update(pretrain_tower(tower, args.tower_scenes, args.tower_epochs,
                                                   image_size=args.image_size, log=print))
                if args.tower_state:
                    torch.save(tower.state_dict(), args.tower_state)
                    Path(args.tower_state + ".json").write_text(json.dumps(tower_report))

        build_tiny_llava(tmp / "init", tokenizer, seed=0, spec=spec, vision_from=vision_from, prepare_tower=pretrain)
        model, processor = load_llava(tmp / "init")
        samples = [encode_conversation(processor, [{"from": "human", "value": f"<image>\n{q}"},
                                                   {"from": "gpt", "value": a}],
                                       [Image.open(io.BytesIO(img)).convert("RGB")], sample_id=str(k))
                   for k, (q, a, img) in enumerate(pairs)]
        if args.freeze:
            for param in model.model.vision_tower.parameters():
                param.requires_grad_(False)
        model.train()
        optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=args.lr)
        order = []
        for _ in range(args.epochs):
            epoch = list(range(len(samples)))
            rng.shuffle(epoch)
            order += epoch
        rows = first_fit([samples[i].length for i in order], 512, 256)
        steps = [rows[i:i + args.rows] for i in range(0, len(rows), args.rows)]
        curve, tokens, started = [], 0, time.perf_counter()
        for s, step_rows in enumerate(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(s, len(steps), args.lr, "cosine", max(1, len(steps) // 20), 0.0)
            batch = collate_packed([[samples[order[i]] for i in row] for row in step_rows],
                                   processor.tokenizer.pad_token_id, 512)
            optimizer.zero_grad(set_to_none=True)
            loss, _ = accumulate_gradients(model, [batch])
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            tokens += batch.n_tokens
            if (s + 1) % max(1, len(steps) // 10) == 0 or s == len(steps) - 1:
                curve.append({"step": s + 1, "tokens": tokens, "loss": round(loss, 3)})
                print(json.dumps(curve[-1]), flush=True)
        seconds = time.perf_counter() - started
        model.eval()
        save_llava(model, processor, tmp / "final")

        scores = {}
        eval_dir = tmp / "eval"
        eval_dir.mkdir()
        for name in ("init", "final"):
            backend = HFBackend(str(tmp / name), batch_size=32)
            for b in benches:
                if not (eval_dir / f"{b}.parquet").exists():
                    eval_sets.write_eval_set(b, args.eval_items, 0, eval_dir)
                items, _ = load_eval_set(Storage(str(eval_dir)), b)
                runs = {name: items} if name == "init" else {name: items, "final, images swapped": swap_images(items)}
                for label, table in runs.items():
                    score = evaluate(backend, get(b), table, 32)["score"].mean()
                    scores.setdefault(b, {})[label] = round(float(score), 3)
            backend.close()
    # the image-swap control: a model that uses the image scores lower with another item's image
    result = {"settings": vars(args), "tower_pretraining": tower_report, "train_seconds": round(seconds, 1),
              "tokens": tokens,
              "tokens_per_s": round(tokens / seconds), "scores": scores}
    print(json.dumps(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
