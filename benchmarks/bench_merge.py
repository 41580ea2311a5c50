"""`make bench` part: every uniform soup of k experts, Gray-code running sum vs merging each
subset from scratch, same experts, same run (`mm_assets/mixing/merge.py`).

k experts (default 8) of a LLaVA-shaped model — a frozen vision tower that is copied, a language
model that is averaged — are written as safetensors files; a soup reads an expert from its file
(the page cache, after the first read) whenever it needs it, as an evaluation loop over soups
would. All 2^k - 1 soups are taken in Gray-code order; for each, the running soup (one expert
added or removed, then the mean) and the from-scratch merge of the same subset are timed
separately and compared tensor by tensor (they must be identical). Reported per soup: both
times, their ratio, and two references measured in the same run:

* the pure rate: reading one expert's file and adding its tensors to a float64 sum — the least a
  soup that changes one expert can cost;
* the ratio's ceiling: the mean subset size (1024 / 255 = 4.02 at k = 8). A from-scratch merge
  does that many reads and additions per soup, the running soup one, and both finish with the
  same division and cast, so the ratio stays below it.

`--quick`: 3 experts of a few thousand parameters (seconds; what the test suite runs). Results
go to stdout and `.bench/results/merge.json` (`--quick`: `merge_quick.json`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mm_assets.mixing.merge import merge_from_scratch, merge_plan, soups_in_gray_order  # noqa: E402

TOWER = "vision_tower."


def model_shapes(width: int, layers: int, vocab: int, tower_width: int) -> dict[str, tuple[int, ...]]:
    """A LLaVA's tensors: tower (frozen in training), projector, language model."""
    shapes = {f"{TOWER}patch_embedding.weight": (tower_width, 3, 16, 16),
              f"{TOWER}post_layernorm.weight": (tower_width,),
              "multi_modal_projector.linear_1.weight": (width, tower_width),
              "language_model.embed_tokens.weight": (vocab, width), "language_model.norm.weight": (width,)}
    for i in range(layers):
        p = f"language_model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (width, width), p + "self_attn.k_proj.weight": (width, width),
                       p + "self_attn.v_proj.weight": (width, width), p + "self_attn.o_proj.weight": (width, width),
                       p + "mlp.gate_proj.weight": (4 * width, width), p + "mlp.up_proj.weight": (4 * width, width),
                       p + "mlp.down_proj.weight": (width, 4 * width), p + "input_layernorm.weight": (width,)})
    return shapes


def write_experts(work: Path, k: int, shapes: dict[str, tuple[int, ...]]) -> list[Path]:
    g = torch.Generator().manual_seed(0)
    start = {key: torch.randn(shape, generator=g) * 0.02 for key, shape in shapes.items()}
    paths = []
    for i in range(k):
        state = {key: t if key.startswith(TOWER) else t + torch.randn(t.shape, generator=g) * 0.002
                 for key, t in start.items()}
        paths.append(work / f"expert_{i}.safetensors")
        save_file(state, str(paths[-1]))
    return paths


def main(quick: bool, work: Path, out: Path) -> dict:
    torch.set_num_threads(1)
    k = 3 if quick else 8
    shapes = model_shapes(*((16, 1, 64, 8) if quick else (512, 4, 8192, 256)))
    paths = write_experts(work, k, shapes)

    def load(i: int) -> dict[str, torch.Tensor]:
        return load_file(str(paths[i]))

    plan = merge_plan(load(0), frozen=lambda key: key.startswith(TOWER))
    params = sum(t.numel() for t in load(0).values())
    averaged = sum(torch.Size(shape).numel() for shape, _ in plan.averaged.values())

    # the pure rate: one expert read and added to a float64 sum
    total = {key: torch.zeros(shape, dtype=torch.float64) for key, (shape, _) in plan.averaged.items()}
    pure = []
    for i in range(k):
        started = time.perf_counter()
        state = load(i)
        for key, acc in total.items():
            acc += state[key].to(torch.float64)
        pure.append(time.perf_counter() - started)

    gray_s, scratch_s, identical, sizes = [], [], True, []
    soups = soups_in_gray_order(plan, load, k)
    while True:
        started = time.perf_counter()
        item = next(soups, None)
        if item is None:
            break
        subset, soup = item
        gray_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        reference = merge_from_scratch(plan, load, subset)
        scratch_s.append(time.perf_counter() - started)
        identical = identical and all(torch.equal(soup[key], reference[key]) for key in reference) \
            and set(soup) == set(reference) == plan.keys
        sizes.append(len(subset))

    per_soup = {"gray_ms": 1000 * sum(gray_s) / len(gray_s), "scratch_ms": 1000 * sum(scratch_s) / len(scratch_s),
                "pure_read_and_add_ms": 1000 * sorted(pure)[len(pure) // 2]}
    results = {
        "experts": k, "soups": len(gray_s), "params": params, "averaged_params": averaged,
        "copied_tensors": len(plan.verbatim), "per_soup": per_soup, "identical": identical,
        "ratio_scratch_over_gray": per_soup["scratch_ms"] / per_soup["gray_ms"],
        "ratio_ceiling_mean_subset_size": sum(sizes) / len(sizes),
        "ratio_gray_over_pure": per_soup["gray_ms"] / per_soup["pure_read_and_add_ms"],
        "machine": {"torch_threads": torch.get_num_threads(), "platform": platform.platform()},
    }
    print(f"{k} experts, {params:,} parameters ({averaged:,} averaged, {len(plan.verbatim)} tensors copied), "
          f"{len(gray_s)} soups")
    print(f"per soup: Gray-code running sum {per_soup['gray_ms']:.1f} ms, from scratch {per_soup['scratch_ms']:.1f} ms "
          f"(×{results['ratio_scratch_over_gray']:.2f}; ceiling ×{results['ratio_ceiling_mean_subset_size']:.2f}, "
          f"the mean subset size); one expert read + added {per_soup['pure_read_and_add_ms']:.1f} ms "
          f"(Gray-code soup ×{results['ratio_gray_over_pure']:.2f} of it); identical bytes: {identical}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 small experts, seconds (what the test suite runs)")
    ap.add_argument("--work", default=None, help="where the experts are written (default: a temporary directory)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    default = REPO / ".bench" / "results" / ("merge_quick.json" if a.quick else "merge.json")
    result_path = Path(a.out) if a.out else default
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(a.work) if a.work else Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        res = main(a.quick, work_dir, result_path)
    sys.exit(0 if res["identical"] else 1)
