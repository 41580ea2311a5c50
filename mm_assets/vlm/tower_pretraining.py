"""Dense pre-training of the tiny vision tower on drawn grounding scenes.

Why: nothing can be downloaded here, so the tiny LLaVA's tower is the embedder's, trained for
retrieval on captions. Its patch features do not separate the objects of a scene: a supervised
probe counting the asked objects on them scores 0.18 on the CountBench look-alike, chance 0.11
(README, "The curation study"). Real VLM towers are pre-trained with location-aware objectives
(SigLIP 2's LocCa decoder predicts boxes and referring expressions). This is the small version:
for each patch, the object centred in it (shape x colour, or none) and how many object centres
it holds (0, 1, 2+).

The scenes are drawn by the sample-data drawers from their own RNG stream ("grounding"): never an
eval item nor a training record, and with no question or answer, so the tower learns what is drawn
where, not the tasks. The tower is pre-trained once and shared by every recipe.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image

from mm_assets.sample_data import eval_sets
from mm_assets.sample_data.canvas import OBJECT_COLOURS, SHAPES, encode
from mm_assets.sample_data.families import detection, general
from mm_assets.sample_data.pool import process_pool
from mm_assets.sample_data.rng import rng_for

N_CLASSES = 1 + len(SHAPES) * len(OBJECT_COLOURS)   # 0 = no object centred in the patch
MAX_CENTRES = 2                                      # "2" means two or more


@dataclass(frozen=True)
class Scene:
    image: bytes                                   # JPEG, as the look-alike photos are stored
    objects: tuple[tuple[str, str, float, float], ...]  # (shape, colour, x, y), x and y in [0, 1)


def grounding_scene(i: int, seed: int) -> Scene:
    """Scene `i`: a counting scene, a shapes scene or a pointing scene, in turn."""
    rng = rng_for(seed, "grounding", i)
    kind = i % 3
    if kind == 0:
        drawn = detection.draw_count(rng, eval_sets.EVAL_SIZING, count=rng.randint(1, 10))
        objs = list(drawn.spec["targets"]) + list(drawn.spec["others"])
    elif kind == 1:
        drawn = general.draw_shapes(rng, eval_sets.EVAL_SIZING)
        objs = list(drawn.spec["objects"])
    else:
        drawn = detection.draw_points(rng, eval_sets.PIXMO_SIZING)
        objs = list(drawn.spec["targets"]) + list(drawn.spec["others"])
    w, h = drawn.spec["w"], drawn.spec["h"]
    return Scene(encode(drawn.image, "JPEG", quality=rng.randint(80, 95)),
                 tuple((o.shape, o.colour, o.cx / w, o.cy / h) for o in objs))


def patch_targets(objects, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(class per patch, object centres per patch capped at MAX_CENTRES), row-major patches."""
    cls = torch.zeros(grid * grid, dtype=torch.long)
    centres = torch.zeros(grid * grid, dtype=torch.long)
    for shape, colour, x, y in objects:
        p = min(grid - 1, int(y * grid)) * grid + min(grid - 1, int(x * grid))
        centres[p] = min(MAX_CENTRES, centres[p] + 1)
        cls[p] = 1 + SHAPES.index(shape) * len(OBJECT_COLOURS) + OBJECT_COLOURS.index(colour)
    return cls, centres


def pixels_uint8(images: list[bytes], size: int) -> torch.Tensor:
    """Images resized as the LLaVA's SigLIP processor resizes them (bilinear, square), uint8:
    a quarter of the float tensor's memory, normalised per batch."""
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
    for k, data in enumerate(images):
        im = Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.BILINEAR)
        out[k] = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)
    return out


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """SigLIP's normalisation (mean 0.5, std 0.5), as the LLaVA's processor applies it."""
    return (pixels.float() / 255 - 0.5) / 0.5


def scene_chunk(start: int, stop: int, seed: int, size: int, patch: int) -> tuple:
    """(pixels uint8, classes, centres) of scenes start..stop-1."""
    grid = size // patch
    scenes = [grounding_scene(i, seed) for i in range(start, stop)]
    targets = [patch_targets(s.objects, grid) for s in scenes]
    return (pixels_uint8([s.image for s in scenes], size), torch.stack([t[0] for t in targets]),
            torch.stack([t[1] for t in targets]))


def _scene_chunk(args: tuple) -> tuple:
    return scene_chunk(*args)


def scene_tensors(n: int, seed: int, size: int, patch: int, chunk: int = 1000,
                  workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pixels uint8, classes, centres) of scenes 0..n-1, drawn by `workers` processes
    (default: every CPU when there are a few thousand scenes; drawing is most of the cost)."""
    if workers is None:
        workers = (os.cpu_count() or 1) if n >= 2000 else 1
    with process_pool(workers) as pool:
        parts = list(pool.imap(_scene_chunk, [(a, min(n, a + chunk), seed, size, patch) for a in range(0, n, chunk)]))
    return tuple(torch.cat([part[k] for part in parts]) for k in range(3))


class DenseHeads(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.cls = torch.nn.Linear(dim, N_CLASSES)
        self.centres = torch.nn.Linear(dim, MAX_CENTRES + 1)


def pretrain_tower(tower: torch.nn.Module, n_scenes: int, epochs: int, *, seed: int = 0, lr: float = 1e-3,
                   batch_size: int = 64, image_size: int = 128, held_out: int | None = None,
                   occupied_weight: float = 4.0, log: Callable[[dict], None] | None = None) -> dict:
    """Train `tower` (a SiglipVisionModel, in place) on `n_scenes` scenes for `epochs` epochs and
    return the curve: per epoch the mean batch loss, and on `held_out` further scenes (not
    trained on; default a tenth, 20 to 500) the class accuracy over patches holding an object
    centre. `occupied_weight`: the class loss weight of those patches (most patches hold none)."""
    started = time.perf_counter()
    held_out = min(500, max(20, n_scenes // 10)) if held_out is None else held_out
    patch = tower.config.patch_size
    pixels, cls, centres = scene_tensors(n_scenes + held_out, seed, image_size, patch)
    prepared = time.perf_counter() - started
    # The run worker's one thread: the pre-training runs beside the curation stages in the other
    # worker, and two threads on two busy cores cost both sides (measured in the study: an epoch
    # took 158 s on two threads against 115 s on one, and the curated datasets 5 min 21 s
    # against 2 min 34 s).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = DenseHeads(tower.config.hidden_size)
        generator = torch.Generator().manual_seed(seed)
        params = list(tower.parameters()) + list(heads.parameters())
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        steps = epochs * -(-n_scenes // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=max(1, steps), pct_start=0.05)
        curve = []
        for epoch in range(epochs):
            tower.train()
            losses = []
            for batch in torch.randperm(n_scenes, generator=generator).split(batch_size):
                h = tower(pixel_values=normalise(pixels[batch])).last_hidden_state
                target = cls[batch].flatten()
                weight = 1 + (occupied_weight - 1) * (target > 0).float()
                ce = torch.nn.functional.cross_entropy(heads.cls(h).flatten(0, 1), target, reduction="none")
                loss = (ce * weight).sum() / weight.sum() + torch.nn.functional.cross_entropy(
                    heads.centres(h).flatten(0, 1), centres[batch].flatten())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
            curve.append({"epoch": epoch + 1, "loss": round(sum(losses) / len(losses), 4),
                          "held_out_class_accuracy": round(_held_out_accuracy(tower, heads, pixels, cls, held_out), 4)})
            if log:
                log(curve[-1])
    tower.eval()
    for p in tower.parameters():
        p.requires_grad_(False)
    return {"scenes": n_scenes, "epochs": epochs, "held_out": held_out, "curve": curve,
            "prepare_seconds": round(prepared, 1), "seconds": round(time.perf_counter() - started, 1)}


@torch.no_grad()
def _held_out_accuracy(tower, heads, pixels, cls, held_out: int) -> float:
    if not held_out:
        return float("nan")
    tower.eval()
    h = tower(pixel_values=normalise(pixels[-held_out:])).last_hidden_state
    occupied = cls[-held_out:] > 0
    return (heads.cls(h).argmax(-1) == cls[-held_out:])[occupied].float().mean().item()
