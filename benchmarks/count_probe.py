"""Does the vision tower carry the count? A supervised probe without the language model
(README, "The curation study": why CountBench stays near 0.2).

A small classifier — two transformer layers over the tower's patch features with one extra
token for the asked label ("red stars", "hexagons") — is trained to answer the CountBench
look-alike's number (2–10) directly, on items drawn by the eval-set generator with another seed,
and scored on the eval set of seed 0. `--train-tower` trains the tower with it (end to end);
otherwise the tower is frozen, as in training. `--no-distractors` draws the same scenes with no
other objects (every object is a target). `--tower-scenes N` first pre-trains the tower densely on
N grounding scenes, as `base_model` does (mm_assets/vlm/tower_pretraining.py). If the probe
cannot count, neither can the LLaVA that reads the same features.

    python benchmarks/count_probe.py --tower .study/artifacts/embedder/<version> [--train-tower]

`--quick`: 32 training and 16 eval items, two epochs, 64 px, the tower pre-trained on 30 scenes,
and without `--tower` a random tiny SigLIP2 tower (seconds; what the test suite runs); `--out`
also writes the result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from mm_assets.sample_data import eval_sets  # noqa: E402
from mm_assets.sample_data.canvas import encode  # noqa: E402
from mm_assets.sample_data.families import detection  # noqa: E402
from mm_assets.sample_data.rng import rng_for  # noqa: E402
from mm_assets.vlm.tower_pretraining import normalise, pixels_uint8, pretrain_tower  # noqa: E402

TRAIN_SEED = 1000   # the eval sets use seed 0
LOW, HIGH = 2, 10   # CountBench's numbers
QUICK = {"image_size": 64, "n": 32, "eval_items": 16, "epochs": 2, "tower_scenes": 30, "tower_epochs": 1}


def count_items(n: int, seed: int, no_distractors: bool) -> list[tuple[bytes, str, int]]:
    """(image, asked label, number) as the CountBench look-alike draws them."""
    out = []
    for i in range(n):
        if no_distractors:
            rng = rng_for(seed, "eval", "countbench", i)
            number = rng.randint(LOW, HIGH)
            spec = (drawn := detection.draw_count(rng, eval_sets.EVAL_SIZING, count=number, distractors=0)).spec
            out.append((encode(drawn.image, "JPEG", quality=90), spec["plural"], number))
        else:
            item = eval_sets.eval_item("countbench", i, seed)
            question = item.row["question"]     # "How many {plural} are there in the image?"
            out.append((item.image, question[len("How many "):question.index(" are there")], item.row["number"]))
    return out


class CountHead(torch.nn.Module):
    """Label token + patch features -> two transformer layers -> the label token's logits."""

    def __init__(self, dim: int, n_patches: int, n_labels: int):
        super().__init__()
        self.label = torch.nn.Embedding(n_labels, dim)
        self.pos = torch.nn.Parameter(torch.zeros(n_patches + 1, dim))
        layer = torch.nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2)
        self.out = torch.nn.Linear(dim, HIGH - LOW + 1)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.encoder(torch.cat([self.label(labels)[:, None], features], 1) + self.pos)
        return self.out(h[:, 0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds (what the test suite runs)")
    p.add_argument("--out", default=None, help="also write the result (JSON) here")
    p.add_argument("--tower", default=None,
                   help="a SigLIP2 embedder directory (the `embedder` asset); required unless --quick")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--n", type=int, default=6000, help="training items")
    p.add_argument("--eval-items", type=int, default=500)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-tower", action="store_true")
    p.add_argument("--no-distractors", action="store_true")
    p.add_argument("--tower-scenes", type=int, default=0,
                   help="first pre-train the tower densely on this many grounding scenes (as base_model does)")
    p.add_argument("--tower-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    if p.parse_known_args()[0].quick:
        p.set_defaults(**QUICK)
    args = p.parse_args()
    if args.tower is None and not args.quick:
        p.error("--tower is required (a random tower probes nothing; only --quick uses one)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from mm_assets.embeddings.model import build_tiny_siglip2, load_embedder
    from mm_assets.vlm.tiny_llava import TinyLlavaSpec, build_tiny_llava_model
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer

    spec = TinyLlavaSpec(image_size=args.image_size)
    embedder = build_tiny_siglip2(seed=0)[0] if args.tower is None else load_embedder(args.tower)[0]
    llava = build_tiny_llava_model(train_bpe_tokenizer(["how many"] * 4), spec=spec, vision_from=embedder)
    tower = llava.model.vision_tower             # converted exactly as the LLaVA uses it
    tower_report = pretrain_tower(tower, args.tower_scenes, args.tower_epochs, image_size=args.image_size,
                                  log=print) if args.tower_scenes else None

    def tensors(items):
        # uint8 (normalised per batch): float pixels of 24 000 items would not fit in memory
        return pixels_uint8([b for b, _, _ in items], args.image_size), [label for _, label, _ in items], \
            torch.tensor([n - LOW for _, _, n in items])

    train = tensors(count_items(args.n, TRAIN_SEED, args.no_distractors))
    test = tensors(count_items(args.eval_items, 0, args.no_distractors))
    vocab = {label: i for i, label in enumerate(sorted(set(train[1]) | set(test[1])))}
    train_labels = torch.tensor([vocab[x] for x in train[1]])
    test_labels = torch.tensor([vocab[x] for x in test[1]])
    head = CountHead(tower.config.hidden_size, spec.num_image_tokens, len(vocab))
    if args.train_tower:
        tower.requires_grad_(True)
    params = list(head.parameters()) + (list(tower.parameters()) if args.train_tower else [])
    optimizer = torch.optim.AdamW(params, lr=args.lr)

    def features(pixels):
        return torch.cat([tower(pixel_values=normalise(pixels[i:i + 256])).last_hidden_state
                          for i in range(0, len(pixels), 256)])

    with torch.no_grad():
        frozen = None if args.train_tower else features(train[0])
    started, curve = time.perf_counter(), []
    for epoch in range(args.epochs):
        tower.train(args.train_tower)
        for batch in torch.randperm(len(train_labels)).split(64):
            f = features(train[0][batch]) if args.train_tower else frozen[batch]
            loss = torch.nn.functional.cross_entropy(head(f, train_labels[batch]), train[2][batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        tower.eval()
        with torch.no_grad():
            pred = head(features(test[0]), test_labels).argmax(1)
        curve.append({"epoch": epoch + 1, "train_loss": round(loss.item(), 3),
                      "accuracy": round((pred == test[2]).float().mean().item(), 3),
                      "within_one": round(((pred - test[2]).abs() <= 1).float().mean().item(), 3)})
        print(json.dumps(curve[-1]), flush=True)
    result = {"settings": vars(args), "tower_pretraining": tower_report,
              "seconds": round(time.perf_counter() - started),
              "chance": round(1 / (HIGH - LOW + 1), 3), "best_accuracy": max(c["accuracy"] for c in curve),
              "final": curve[-1]}
    print(json.dumps(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
