"""General-domain scenes: shapes with colours and spatial relations; tile grids."""

from __future__ import annotations

import random

from PIL import ImageDraw

from ..canvas import COLOURS, OBJECT_COLOURS, SHAPES, Obj, Sizing, background, canvas_size, \
    draw_shape, jitter, lighting, place
from ..conversations import QA
from ..vocab import NUMBER_WORDS, ORDINALS
from .base import Drawn


def scene_objects(rng: random.Random, w: int, h: int, n: int, tone: str) -> list[Obj]:
    """`n` objects with distinct colours (so "<colour> <shape>" names each uniquely)."""
    banned = {"white"} if tone == "light" else {"black"}
    colours = [c for c in OBJECT_COLOURS if c not in banned]
    rng.shuffle(colours)
    side = min(w, h)
    discs = place(rng, w, h, n, (side * 0.08, side * 0.17), gap=side * 0.03)
    return [Obj(rng.choice(SHAPES), colours[i], cx, cy, r, rng.uniform(0, 0.5))
            for i, (cx, cy, r) in enumerate(discs)]


def render_objects(draw: ImageDraw.ImageDraw, objs: list[Obj], rng: random.Random, tone: str) -> None:
    outline = (20, 20, 20) if tone == "light" else (235, 235, 235)
    width = rng.choice([0, 1, 2, 3])
    for o in objs:
        draw_shape(draw, o.shape, o.cx, o.cy, o.r, fill=jitter(COLOURS[o.colour], rng, 10),
                   outline=outline if width else None, width=max(width, 1), rot=o.rot)


def _other(rng: random.Random, options, not_this):
    pool = [o for o in options if o != not_this]
    return rng.choice(pool)


def shape_qas(objs: list[Obj], rng: random.Random) -> list[QA]:
    qas: list[QA] = []
    by_shape: dict[str, list[Obj]] = {}
    for o in objs:
        by_shape.setdefault(o.shape, []).append(o)
    unique = [o for o in objs if len(by_shape[o.shape]) == 1]
    if unique:
        o = rng.choice(unique)
        ans = o.colour if rng.random() < 0.7 else f"The {o.shape} is {o.colour}."
        wrong = _other(rng, OBJECT_COLOURS, o.colour)
        qas.append(QA(f"What colour is the {o.shape}?", ans, wrong=wrong, short=o.colour, short_wrong=wrong,
                      form="short", options=OBJECT_COLOURS))
    o = rng.choice(objs)
    ans = o.shape if rng.random() < 0.6 else f"It is a {o.shape}."
    wrong = _other(rng, SHAPES, o.shape)
    qas.append(QA(f"What shape is the {o.colour} object?", ans, wrong=wrong, short=o.shape, short_wrong=wrong,
                  form="short", options=SHAPES))
    pairs = [(a, b) for a in objs for b in objs if a is not b]
    rng.shuffle(pairs)
    for a, b in pairs:
        if abs(a.cx - b.cx) > a.r + b.r:
            side = "left" if a.cx < b.cx else "right"
            ans = side.capitalize() if rng.random() < 0.5 else \
                f"The {a.name} is to the {side} of the {b.name}."
            wrong_side = "right" if side == "left" else "left"
            qas.append(QA(f"Is the {a.name} to the left or to the right of the {b.name}?", ans,
                          wrong=wrong_side.capitalize(), short=side.capitalize(),
                          short_wrong=wrong_side.capitalize(), form="short", options=("Left", "Right")))
            break
    for a, b in pairs:
        if abs(a.cy - b.cy) > a.r + b.r:
            rel = "above" if a.cy < b.cy else "below"
            other_rel = "below" if rel == "above" else "above"
            qas.append(QA(f"Is the {a.name} above or below the {b.name}?",
                          f"It is {rel} the {b.name}.",
                          wrong=f"It is {other_rel} the {b.name}.", short=rel.capitalize(),
                          short_wrong=other_rel.capitalize(), form="short", options=("Above", "Below")))
            break
    top = min(objs, key=lambda o: o.cy - o.r)
    not_top = _other(rng, objs, top) if len(objs) > 1 else None
    qas.append(QA("Which object is closest to the top of the image?", f"The {top.name}.",
                  wrong=f"The {not_top.name}." if not_top else None, short=top.name,
                  short_wrong=not_top.name if not_top else None, form="short",
                  options=tuple(o.name for o in objs)))
    n = len(objs)
    names = ", ".join(f"a {o.name}" for o in sorted(objs, key=lambda o: o.cx))
    ans = str(n) if rng.random() < 0.5 else \
        f"There are {NUMBER_WORDS[n]} shapes. From left to right: {names}."
    wrong = str(n + rng.choice([-1, 1]))
    qas.append(QA("How many shapes are there in the image?", ans, wrong=wrong, short=str(n), short_wrong=wrong,
                  form="count"))
    rng.shuffle(qas)
    return qas


def draw_shapes(rng: random.Random, sizing: Sizing, n: int | None = None) -> Drawn:
    w, h = canvas_size(rng, sizing)
    tone = "light" if rng.random() < 0.75 else "dark"
    img, _ = background(rng, w, h, tone)
    objs = scene_objects(rng, w, h, n or rng.randint(3, 6), tone)
    render_objects(ImageDraw.Draw(img), objs, rng, tone)
    return Drawn(img, shape_qas(objs, rng), {"w": w, "h": h, "objects": objs, "tone": tone})


def draw_tiles(rng: random.Random, sizing: Sizing) -> Drawn:
    w, h = canvas_size(rng, sizing)
    rows, cols = rng.randint(2, 4), rng.randint(2, 5)
    palette = rng.sample([c for c in OBJECT_COLOURS if c not in ("white", "black")], rng.randint(3, 5))
    grid = [[rng.choice(palette) for _ in range(cols)] for _ in range(rows)]
    img, _ = background(rng, w, h, "any", noise=0.0)
    draw = ImageDraw.Draw(img)
    mx, my = w * rng.uniform(0.06, 0.12), h * rng.uniform(0.06, 0.12)
    gap = min(w, h) * rng.uniform(0.01, 0.05)
    tw = (w - 2 * mx - gap * (cols - 1)) / cols
    th = (h - 2 * my - gap * (rows - 1)) / rows
    radius = int(min(tw, th) * rng.choice([0, 0, 0.15, 0.3]))
    border = rng.choice([None, (20, 20, 20), (250, 250, 250)])
    for r in range(rows):
        for c in range(cols):
            x0, y0 = mx + c * (tw + gap), my + r * (th + gap)
            draw.rounded_rectangle([x0, y0, x0 + tw, y0 + th], radius=radius,
                                   fill=jitter(COLOURS[grid[r][c]], rng, 8), outline=border,
                                   width=2 if border else 0)
    qas: list[QA] = []
    r, c = rng.randrange(rows), rng.randrange(cols)
    qas.append(QA(f"What colour is the tile in row {r + 1}, column {c + 1}? Rows are counted from "
                  f"the top and columns from the left.", grid[r][c],
                  wrong=_other(rng, palette, grid[r][c]), short=grid[r][c], form="short",
                  options=tuple(palette)))
    colour = rng.choice(palette)
    count = sum(row.count(colour) for row in grid)
    qas.append(QA(f"How many {colour} tiles are there?", str(count), wrong=str(count + 1), short=str(count),
                  form="count"))
    counts = {p: sum(row.count(p) for row in grid) for p in palette}
    best = max(counts.values())
    winners = [p for p, v in counts.items() if v == best]
    if len(winners) == 1:
        loser = _other(rng, palette, winners[0])
        qas.append(QA("Which colour appears on the most tiles?",
                      f"{winners[0].capitalize()}, on {best} of the {rows * cols} tiles.",
                      wrong=loser.capitalize(), short=winners[0], short_wrong=loser, form="short",
                      options=tuple(palette)))
    qas.append(QA("How many rows and columns does the grid have?",
                  f"{rows} rows and {cols} columns.", wrong=f"{cols} rows and {rows + 1} columns."))
    r = rng.randrange(rows)
    qas.append(QA(f"List the colours of the {ORDINALS[r]} row from left to right.",
                  ", ".join(grid[r]), wrong=", ".join(reversed(grid[r])) if len(set(grid[r])) > 1 else None))
    rng.shuffle(qas)
    img = lighting(img, rng, (15, 70))
    return Drawn(img, qas, {"grid": grid})


def realworld_item(rng: random.Random, sizing: Sizing) -> tuple[Drawn, str, str]:
    """A RealWorldQA-style item: question (with options and instruction) and answer."""
    drawn = draw_shapes(rng, sizing, n=rng.randint(3, 5))
    objs: list[Obj] = drawn.spec["objects"]
    if rng.random() < 0.6 and len(objs) >= 3:
        key, phrase = rng.choice([(lambda o: o.cx, "furthest to the right"),
                                  (lambda o: -o.cx, "furthest to the left"),
                                  (lambda o: -o.cy, "closest to the top"),
                                  (lambda o: o.cy, "closest to the bottom")])
        ranked = sorted(objs, key=key, reverse=True)
        if abs(key(ranked[0]) - key(ranked[1])) < 6:
            ranked = ranked[:1] + ranked[2:]
        options = ranked[: min(4, len(ranked))]
        rng.shuffle(options)
        letters = "ABCD"
        answer = letters[options.index(ranked[0])]
        lines = [f"Which object is {phrase}?"]
        lines += [f"{letters[i]}. The {o.name}." for i, o in enumerate(options)]
        lines.append("Please answer directly with only the letter of the correct option and nothing else.")
        return drawn, "\n".join(lines), answer
    separated = [(a, b) for a in objs for b in objs if a is not b and abs(a.cy - b.cy) > a.r + b.r]
    if separated and rng.random() < 0.5:
        a, b = rng.choice(separated)
        q = f"Is the {a.name} above the {b.name}?"
        answer = "Yes" if a.cy < b.cy else "No"
    else:
        q = "How many shapes are in the image?"
        answer = str(len(objs))
    return drawn, q + "\nPlease answer directly with a single word or number.", answer
