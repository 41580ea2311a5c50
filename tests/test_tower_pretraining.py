"""The tiny vision tower's dense pre-training (mm_assets/vlm/tower_pretraining.py): its targets,
its scenes (never an eval item), and that it trains the tower and nothing else, reproducibly."""

from __future__ import annotations

import hashlib

import pytest
import torch

from mm_assets.sample_data import eval_sets
from mm_assets.sample_data.canvas import OBJECT_COLOURS, SHAPES
from mm_assets.vlm.tower_pretraining import MAX_CENTRES, N_CLASSES, grounding_scene, patch_targets, \
    pretrain_tower


def test_each_patch_names_the_object_centred_in_it_and_counts_centres():
    objects = [("star", "red", 0.05, 0.05), ("circle", "blue", 0.60, 0.10),
               ("square", "green", 0.61, 0.12), ("cross", "white", 0.62, 0.13), ("heart", "pink", 0.99, 0.99)]
    cls, centres = patch_targets(objects, grid=4)
    assert cls.shape == centres.shape == (16,)
    assert cls[0] == 1 + SHAPES.index("star") * len(OBJECT_COLOURS) + OBJECT_COLOURS.index("red")
    assert centres[0] == 1
    assert centres[2] == MAX_CENTRES            # three centres in one patch: capped
    assert cls[2] > 0 and cls[15] > 0 and centres[15] == 1
    assert int((cls > 0).sum()) == 3 and int(cls.max()) < N_CLASSES


def test_scenes_are_reproducible_and_never_an_eval_item():
    a, b = grounding_scene(7, seed=0), grounding_scene(7, seed=0)
    assert a == b and a.objects and all(0 <= x < 1 and 0 <= y < 1 for _, _, x, y in a.objects)
    assert grounding_scene(7, seed=1).image != a.image
    scenes = {hashlib.sha256(grounding_scene(i, 0).image).hexdigest() for i in range(60)}
    evals = {hashlib.sha256(eval_sets.eval_item(bench, i, 0).image).hexdigest()
             for bench in ("countbench", "realworldqa", "pixmo_points") for i in range(60)}
    assert len(scenes) == 60 and not scenes & evals


@pytest.fixture(scope="module")
def tiny_llava_tower():
    from mm_assets.embeddings.model import build_tiny_siglip2
    from mm_assets.vlm.tiny_llava import TinyLlavaSpec, build_tiny_llava_model
    from mm_assets.vlm.tokenizer import train_bpe_tokenizer

    def build():
        llava = build_tiny_llava_model(train_bpe_tokenizer(["how many"] * 4), spec=TinyLlavaSpec(image_size=64),
                                       vision_from=build_tiny_siglip2(seed=0)[0])
        return llava.model.vision_tower
    return build


def test_pretraining_changes_the_tower_reproducibly_and_learns(tiny_llava_tower):
    before = {k: v.clone() for k, v in tiny_llava_tower().state_dict().items()}
    towers, reports = [], []
    for _ in range(2):
        tower = tiny_llava_tower()
        reports.append(pretrain_tower(tower, 160, 4, image_size=64, held_out=40, lr=3e-3, batch_size=16))
        towers.append(tower.state_dict())
    assert all(torch.equal(towers[0][k], towers[1][k]) for k in towers[0])           # same seed, same weights
    assert any(not torch.equal(towers[0][k], before[k]) for k in before)             # the tower was trained
    assert all(not p.requires_grad for p in tower.parameters())                      # frozen afterwards
    report = reports[0]
    assert report["scenes"] == 160 and report["held_out"] == 40 and len(report["curve"]) == 4
    losses = [e["loss"] for e in report["curve"]]
    assert losses[-1] < losses[0], losses
    assert 0 <= report["curve"][-1]["held_out_class_accuracy"] <= 1
