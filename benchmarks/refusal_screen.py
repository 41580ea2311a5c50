"""How large a share of refusals does it take to become the model's answer? (the screening behind
the `refusals` mix preset; README, "Half the answers refused").

Takes a finished study home's baseline curated shards (every domain), replaces the answers of a
share R of the records by one refusal each (the phrasings the generator plants), trains one seed
from the home's base model with the study's training settings (1.0 M tokens) and scores the final
checkpoint with the project's eval runner on 500 items per benchmark, drawn as the study draws its
eval sets (seed 0).
No Dagster: a screening that costs minutes per rate instead of a study run per rate.

    python benchmarks/refusal_screen.py --home .study --rate 0.5 --out /tmp/screen

Run two rates side by side (one torch thread each) on 2 cores. The baseline's data already
carries the study mix's own defects; the refused records are drawn among all of them, so R is
the share of training records whose answers are refusals.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mm_assets.sample_data.conversations import refused  # noqa: E402

SCREENED = ("countbench", "chartqa", "realworldqa", "docvqa")


def refuse_shards(shards: list[Path], out_dir: Path, rate: float, seed: int = 7) -> tuple[list[Path], int, int]:
    """Copies of `shards` in `out_dir` with every answer of a share `rate` of the records replaced
    by one refusal (images and questions untouched); returns (paths, records, refused)."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, records, n_refused = [], 0, 0
    for k, shard in enumerate(shards):
        dst = out_dir / f"{k:04d}-{shard.name}"
        with tarfile.open(shard) as src, tarfile.open(dst, "w") as out:
            for member in src.getmembers():
                data = src.extractfile(member).read()
                if member.name.endswith(".json"):
                    record = json.loads(data)
                    records += 1
                    if rng.random() < rate:
                        n_refused += 1
                        record["conversations"] = refused(record["conversations"], rng)
                        data = json.dumps(record).encode()
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
        paths.append(dst)
    return paths, records, n_refused


def only_version(folder: Path) -> Path:
    (version,) = [p for p in folder.iterdir() if p.is_dir()]
    return version


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", default=".study", help="a finished study home")
    p.add_argument("--rate", type=float, required=True, help="share of records whose answers become a refusal")
    p.add_argument("--out", required=True, help="work directory (refused shards, checkpoint, result.json)")
    p.add_argument("--budget-tokens", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch

    from mm_assets.evaluation.backends.hf import HFBackend
    from mm_assets.evaluation.benchmarks import get
    from mm_assets.evaluation.runner import evaluate
    from mm_assets.sample_data import eval_sets
    from mm_assets.sources.eval_sets import load_eval_set
    from mm_assets.storage import Storage
    from mm_assets.training.trainer import TrainConfig, encode_shards, train
    from resources.training import TrainingResource

    torch.set_num_threads(args.threads)
    artifacts = Path(args.home) / "artifacts"
    out = Path(args.out) / f"rate-{args.rate}"
    curated = artifacts / "curated" / "baseline"
    shards = [t for d in sorted(curated.iterdir()) for t in sorted(only_version(d).glob("*.tar"))]
    paths, records, refused = refuse_shards(shards, out / "shards", args.rate)
    print(f"rate {args.rate}: {refused} of {records} records refused", flush=True)

    base = only_version(artifacts / "base_model") / "model"
    started = time.perf_counter()
    training = TrainingResource()
    dataset = encode_shards(base, paths, training.max_len)
    cfg = TrainConfig(training_run=f"refusal-screen-{args.rate}", budget_tokens=args.budget_tokens,
                      checkpoint_fractions=(1.0,), save_each_epoch=False, seed=args.seed, **training.optimisation())
    result = train(cfg, base, paths, out_dir_fn=lambda epoch, step: out / f"checkpoint-e{epoch}-s{step}",
                   dataset=dataset)
    trained = time.perf_counter() - started

    scores, answers = {}, {}
    backend = HFBackend(str(result.checkpoints[-1]["path"]), batch_size=32)
    for bench in SCREENED:
        eval_sets.write_eval_set(bench, 500, 0, out / "eval_sets")
        items, _ = load_eval_set(Storage(str(out / "eval_sets")), bench)
        scored = evaluate(backend, get(bench), items, 32)
        scores[bench] = round(float(scored["score"].mean()), 3)
        answers[bench] = Counter(scored["raw_output"].to_list()).most_common(3)
        print(bench, scores[bench], answers[bench], flush=True)
    backend.close()
    summary = {"rate": args.rate, "records": records, "refused": refused, "seed": args.seed,
               "budget_tokens": args.budget_tokens, "train_seconds": round(trained, 1), "scores": scores,
               "most_common_outputs": answers}
    (out / "result.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
