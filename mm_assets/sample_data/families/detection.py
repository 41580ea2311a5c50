"""Detection-domain images: countable objects and pointing targets (Molmo point format)."""

from __future__ import annotations

import random

from PIL import ImageDraw

from ..canvas import COLOURS, OBJECT_COLOURS, PLURALS, SHAPES, Obj, Sizing, background, \
    canvas_size, draw_shape, jitter, place
from ..conversations import QA
from ..vocab import NUMBER_WORDS
from .base import Drawn


def _scene(rng: random.Random, sizing: Sizing, count: int, n_distractors: int,
           by_colour: bool) -> tuple:
    w, h = canvas_size(rng, sizing)
    tone = "light" if rng.random() < 0.7 else "dark"
    img, _ = background(rng, w, h, tone)
    banned = {"white"} if tone == "light" else {"black"}
    colours = [c for c in OBJECT_COLOURS if c not in banned]
    target_shape = rng.choice(SHAPES)
    target_colour = rng.choice(colours)
    total = count + n_distractors
    side = min(w, h)
    r_hi = side * (0.11 if total <= 5 else 0.085 if total <= 9 else 0.065)
    discs: list = []
    for _ in range(6):
        discs = place(rng, w, h, total, (r_hi * 0.6, r_hi), gap=side * 0.015)
        if len(discs) >= count:
            break
        r_hi *= 0.8
    if len(discs) < total:          # small canvas: fewer distractors, never fewer targets
        n_distractors = max(0, len(discs) - count)
        discs = discs[: count + n_distractors]
    if len(discs) < count:
        raise RuntimeError("could not place the target objects")
    rng.shuffle(discs)
    objs: list[Obj] = []
    for i, (cx, cy, r) in enumerate(discs):
        if i < count:
            colour = target_colour if by_colour else rng.choice(colours)
            objs.append(Obj(target_shape, colour, cx, cy, r, rng.uniform(0, 0.6)))
        else:
            if by_colour and rng.random() < 0.5:   # same shape, other colour
                shape, colour = target_shape, rng.choice([c for c in colours if c != target_colour])
            else:
                shape, colour = rng.choice([s for s in SHAPES if s != target_shape]), rng.choice(colours)
            objs.append(Obj(shape, colour, cx, cy, r, rng.uniform(0, 0.6)))
    draw = ImageDraw.Draw(img)
    outline = (20, 20, 20) if tone == "light" else (235, 235, 235)
    for o in objs:
        draw_shape(draw, o.shape, o.cx, o.cy, o.r, fill=jitter(COLOURS[o.colour], rng, 10),
                   outline=outline, width=1, rot=o.rot)
    label = f"{target_colour} {target_shape}" if by_colour else target_shape
    return img, w, h, objs[:count], objs[count:], label, target_shape, target_colour


def _plural(label: str) -> str:
    head, _, last = label.rpartition(" ")
    return (head + " " if head else "") + PLURALS[last]


def molmo_points(points: list[tuple[float, float]], label: str) -> str:
    """Molmo's answer format; coordinates are percent of width/height with one decimal."""
    if not points:
        return "There are none."
    pts = sorted((round(x, 1), round(y, 1)) for x, y in points)
    if len(pts) == 1:
        return f'<point x="{pts[0][0]:.1f}" y="{pts[0][1]:.1f}" alt="{label}">{label}</point>'
    attrs = " ".join(f'x{i}="{x:.1f}" y{i}="{y:.1f}"' for i, (x, y) in enumerate(pts, 1))
    return f'<points {attrs} alt="{label}">{label}</points>'


def percent_points(objs: list[Obj], w: int, h: int) -> list[tuple[float, float]]:
    return [(100 * o.cx / w, 100 * o.cy / h) for o in objs]


def draw_count(rng: random.Random, sizing: Sizing, count: int | None = None,
               distractors: int | None = None) -> Drawn:
    """`distractors`: other objects in the scene (default: 0–4 drawn from `rng`)."""
    count = count if count is not None else rng.randint(1, 10)
    by_colour = rng.random() < 0.5
    img, w, h, targets, others, label, shape, colour = _scene(
        rng, sizing, count, rng.randint(0, 4) if distractors is None else distractors, by_colour)
    plural = _plural(label)
    q = rng.choice([f"How many {plural} are there?", f"How many {plural} are in the image?",
                    f"Count the {plural}."])
    ans = str(count) if rng.random() < 0.6 else \
        f"There {'is' if count == 1 else 'are'} {count} {label if count == 1 else plural}."
    wrong = str(count + rng.choice([-1, 1, 2]) if count > 1 else count + 1)
    qas = [QA(q, ans, wrong=wrong, short=str(count), short_wrong=wrong, form="count")]
    total = len(targets) + len(others)
    qas.append(QA("How many objects are there in total?", str(total), wrong=str(total + 1), short=str(total),
                  form="count"))
    spec = {"w": w, "h": h, "label": label, "plural": plural, "count": count, "targets": targets,
            "others": others, "shape": shape, "colour": colour, "by_colour": by_colour}
    return Drawn(img, qas, spec)


def draw_points(rng: random.Random, sizing: Sizing, count: int | None = None) -> Drawn:
    negative = count == 0 or (count is None and rng.random() < 0.08)
    n = 0 if negative else (count if count is not None else rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 7]))
    by_colour = rng.random() < 0.4
    img, w, h, targets, others, label, shape, colour = _scene(
        rng, sizing, max(n, 0), rng.randint(1, 4), by_colour)
    if negative:
        absent = [s for s in SHAPES if s not in {o.shape for o in others}]
        label = rng.choice(absent) if absent else "dog"
    pts = percent_points(targets, w, h)
    plural = _plural(label) if label in PLURALS or label.split(" ")[-1] in PLURALS else label
    alt = label if n == 1 else plural
    q = rng.choice([f"Point to the {alt}.", f"Point to any {plural} in the image.",
                    f"Locate every {label}.", f"Point to all the {plural}."])
    answer = molmo_points(pts, alt)
    wrong_pts = [((x + 17.3) % 100, (y + 23.9) % 100) for x, y in pts] or [(50.0, 50.0)]
    qas = [QA(q, answer, wrong=molmo_points(wrong_pts, alt), form="point")]
    if n >= 2:
        qas.append(QA(f"Count the {plural} by pointing.",
                      f"Counting the {molmo_points(pts, plural)} shows a total of {n}.",
                      wrong=f"A total of {n + 1}."))
    spec = {"w": w, "h": h, "label": label, "targets": targets, "others": others, "points": pts}
    return Drawn(img, qas, spec)


def count_caption(spec: dict, rng: random.Random) -> str:
    n = spec["count"]
    noun = spec["label"] if n == 1 else spec["plural"]
    where = rng.choice(["on a plain background", "arranged on a coloured surface",
                        "scattered across the picture", "in a simple flat illustration"])
    return f"{NUMBER_WORDS[n].capitalize()} {noun} {where}."
