"""Domain-specific images: labelled cycle diagrams and labelled parts diagrams."""

from __future__ import annotations

import math
import random

from PIL import ImageDraw

from .. import fonts
from ..canvas import COLOURS, Sizing, background, canvas_size, jitter, lighting
from ..conversations import QA
from .base import Drawn

CYCLES = {
    "water cycle": ("Evaporation", "Condensation", "Precipitation", "Collection"),
    "butterfly life cycle": ("Egg", "Caterpillar", "Pupa", "Butterfly"),
    "frog life cycle": ("Egg", "Tadpole", "Froglet", "Adult frog"),
    "rock cycle": ("Igneous rock", "Weathering", "Sediment", "Sedimentary rock", "Metamorphic rock",
                   "Magma"),
    "plant life cycle": ("Seed", "Germination", "Seedling", "Adult plant", "Flower", "Fruit"),
    "carbon cycle": ("Atmosphere", "Photosynthesis", "Plants", "Animals", "Decomposition"),
    "cell cycle": ("G1 phase", "S phase", "G2 phase", "Mitosis"),
    "nitrogen cycle": ("Nitrogen gas", "Fixation", "Ammonium", "Nitrification", "Nitrates",
                       "Denitrification"),
    "moon phase cycle": ("New moon", "First quarter", "Full moon", "Last quarter"),
    "product life cycle": ("Design", "Production", "Distribution", "Use", "Recycling"),
}
PARTS = {
    "plant cell": ("Cell wall", "Nucleus", "Vacuole", "Chloroplast", "Cytoplasm", "Membrane"),
    "animal cell": ("Nucleus", "Membrane", "Mitochondrion", "Ribosome", "Cytoplasm", "Golgi body"),
    "flower": ("Petal", "Stem", "Leaf", "Sepal", "Stamen", "Pistil"),
    "volcano": ("Crater", "Vent", "Magma chamber", "Lava flow", "Ash cloud"),
    "tooth": ("Enamel", "Dentin", "Pulp", "Root", "Crown", "Gum"),
    "eye": ("Cornea", "Iris", "Lens", "Retina", "Optic nerve", "Pupil"),
}
_BOX = [COLOURS[c] for c in ("blue", "green", "orange", "purple", "cyan", "pink", "yellow")]


def _arrow(draw, p, q, fill, width, head):
    draw.line([p, q], fill=fill, width=width)
    a = math.atan2(q[1] - p[1], q[0] - p[0])
    left = (q[0] - head * math.cos(a - 0.45), q[1] - head * math.sin(a - 0.45))
    right = (q[0] - head * math.cos(a + 0.45), q[1] - head * math.sin(a + 0.45))
    draw.polygon([q, left, right], fill=fill)


def draw_cycle(rng: random.Random, sizing: Sizing) -> Drawn:
    w, h = canvas_size(rng, sizing, aspect=(0.9, 1.5))
    img, _ = background(rng, w, h, "light", noise=0.0)
    draw = ImageDraw.Draw(img)
    name = rng.choice(list(CYCLES))
    stages = list(CYCLES[name])
    k = len(stages)
    family = rng.choice(fonts.PLAIN_FONTS[:3])
    ink = (25, 25, 25)
    top = 4
    if rng.random() < 0.7:
        title = name.title()
        tf = fonts.fit_font(rng.choice(fonts.BOLD_FONTS), title, w * 0.9, int(min(w, h) * 0.065))
        draw.text(((w - tf.getlength(title)) / 2, 4), title, fill=ink, font=tf)
        top += tf.size + 4
    cx, cy = w / 2, top + (h - top) / 2
    rx, ry = w * 0.33, (h - top) * 0.32
    start = rng.uniform(0, 2 * math.pi)
    direction = rng.choice([1, -1])
    box_w = min(w * 0.3, 2 * math.pi * rx / k * 0.75)
    size = int(min(w, h) * 0.055)
    fill = jitter(rng.choice(_BOX), rng, 20)
    rounded = rng.random() < 0.6
    centres = []
    for i in range(k):
        a = start + direction * 2 * math.pi * i / k
        centres.append((cx + rx * math.cos(a), cy + ry * math.sin(a)))
    boxes = []
    for (x, y), label in zip(centres, stages):
        f = fonts.fit_font(family, label, box_w - 6, size)
        bw, bh = f.getlength(label) + 10, f.size + 10
        box = [x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2]
        if rounded:
            draw.rounded_rectangle(box, radius=int(bh / 3), fill=fill, outline=ink, width=1)
        else:
            draw.ellipse([box[0] - 6, box[1] - 3, box[2] + 6, box[3] + 3], fill=fill, outline=ink)
        draw.text((x - f.getlength(label) / 2, y - f.size / 2 - 1), label, fill=ink, font=f)
        boxes.append((bw, bh))
    width, head = rng.choice([1, 2, 3]), max(5, int(min(w, h) * 0.025))
    for i in range(k):
        (x0, y0), (x1, y1) = centres[i], centres[(i + 1) % k]
        d = math.hypot(x1 - x0, y1 - y0) or 1.0
        ux, uy = (x1 - x0) / d, (y1 - y0) / d
        s0 = min(boxes[i][0] / 2 / max(abs(ux), 1e-3), boxes[i][1] / 2 / max(abs(uy), 1e-3)) + 4
        s1 = min(boxes[(i + 1) % k][0] / 2 / max(abs(ux), 1e-3),
                 boxes[(i + 1) % k][1] / 2 / max(abs(uy), 1e-3)) + 4
        if s0 + s1 < d:
            _arrow(draw, (x0 + ux * s0, y0 + uy * s0), (x1 - ux * s1, y1 - uy * s1), ink, width, head)
    i = rng.randrange(k)
    nxt, prv = stages[(i + 1) % k], stages[i - 1]
    other = rng.choice([c for c in CYCLES if c != name])
    options = tuple(stages)
    qas = [
        QA(f"According to the diagram, what stage comes after {stages[i]}?", nxt, wrong=prv, short=nxt,
           form="short", options=options),
        QA(f"Which label does the arrow from {stages[i]} point to?", nxt, wrong=prv, short=nxt, form="short",
           options=options),
        QA(f"What label is connected to {stages[i]} by an incoming arrow?", prv, wrong=nxt, short=prv,
           form="short", options=options),
        QA("How many stages are shown in the diagram?", str(k), wrong=str(k + 1), short=str(k), form="short"),
        QA("What process does this diagram show?", f"The {name}.", wrong=f"The {other}.", short=name,
           short_wrong=other, form="short", options=tuple(CYCLES)),
    ]
    j = rng.randrange(k)
    qas.append(QA(f"What label is connected to {stages[j]}?",
                  f"{stages[j]} is connected to {stages[j - 1]} (before it) and "
                  f"{stages[(j + 1) % k]} (after it).",
                  wrong=f"{stages[j]} is connected to {stages[(j + 2) % k]}."))
    rng.shuffle(qas)
    img = lighting(img, rng, (8, 45))
    return Drawn(img, qas, {"cycle": name, "stages": stages})


def draw_parts(rng: random.Random, sizing: Sizing) -> Drawn:
    w, h = canvas_size(rng, sizing, aspect=(1.1, 1.7))
    img, _ = background(rng, w, h, "light", noise=0.0)
    draw = ImageDraw.Draw(img)
    name = rng.choice(list(PARTS))
    k = rng.randint(3, min(5, len(PARTS[name])))
    parts = rng.sample(PARTS[name], k)
    ink = (25, 25, 25)
    bx0, bx1 = w * 0.3, w * 0.7
    by0, by1 = h * 0.12, h * 0.88
    body = jitter(rng.choice([(200, 230, 200), (240, 220, 190), (220, 210, 240), (250, 200, 200)]), rng, 15)
    if rng.random() < 0.5:
        draw.ellipse([bx0, by0, bx1, by1], fill=body, outline=ink, width=2)
    else:
        draw.rounded_rectangle([bx0, by0, bx1, by1], radius=int((bx1 - bx0) / 4), fill=body,
                               outline=ink, width=2)
    for _ in range(rng.randint(1, 3)):
        ex, ey = rng.uniform(bx0 + 20, bx1 - 20), rng.uniform(by0 + 20, by1 - 20)
        er = min(w, h) * rng.uniform(0.04, 0.08)
        draw.ellipse([ex - er, ey - er * 0.8, ex + er, ey + er * 0.8],
                     fill=jitter(rng.choice(_BOX), rng, 20), outline=ink)
    letters = "ABCDEFG"
    family = rng.choice(fonts.PLAIN_FONTS[:3])
    size = int(min(w, h) * 0.06)
    sides = [i % 2 for i in range(k)]
    rng.shuffle(sides)
    per_side = [sides.count(0), sides.count(1)]
    seen = [0, 0]
    anchors = []
    show_names = rng.random() < 0.75
    for i, part in enumerate(parts):
        side = sides[i]
        seen[side] += 1
        ly = h * 0.1 + (h * 0.8) * seen[side] / (per_side[side] + 1)
        ax = rng.uniform(bx0 + (bx1 - bx0) * 0.25, bx1 - (bx1 - bx0) * 0.25)
        ay = rng.uniform(by0 + (by1 - by0) * 0.2, by1 - (by1 - by0) * 0.2)
        text = f"{letters[i]}: {part}" if show_names else letters[i]
        f = fonts.fit_font(family, text, w * 0.27, size)
        tw = f.getlength(text)
        tx = 4 if side == 0 else w - tw - 4
        draw.text((tx, ly - f.size / 2), text, fill=ink, font=f)
        lx = tx + tw + 3 if side == 0 else tx - 3
        draw.line([(lx, ly), (ax, ay)], fill=ink, width=1)
        draw.ellipse([ax - 3, ay - 3, ax + 3, ay + 3], fill=ink)
        anchors.append((ax, ay))
    i = rng.randrange(k)
    other = parts[(i + 1) % k]
    other_name = rng.choice([p for p in PARTS if p != name])
    qas = [QA("What type of diagram is this?", f"A labelled diagram of a {name}.",
              wrong=f"A labelled diagram of a {other_name}.", short=name, short_wrong=other_name,
              form="short", options=tuple(PARTS))]
    if show_names:
        qas += [
            QA(f"Which letter marks the {parts[i].lower()}?", letters[i], wrong=letters[(i + 1) % k],
               short=letters[i], form="short", options=tuple(letters[:k])),
            QA(f"What part is labelled {letters[i]}?", parts[i], wrong=other, short=parts[i], form="short",
               options=tuple(parts)),
            QA(f"What label is connected to the line marked {letters[i]}?", parts[i], wrong=other,
               short=parts[i], form="short", options=tuple(parts)),
        ]
    qas.append(QA("How many parts are labelled in the diagram?", str(k), wrong=str(k + 1), short=str(k),
                  form="short"))
    rng.shuffle(qas)
    img = lighting(img, rng, (8, 45))
    return Drawn(img, qas, {"object": name, "parts": parts, "show_names": show_names})
