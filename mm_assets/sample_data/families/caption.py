"""Caption-domain scenes (sky, ground, houses, trees, clouds, balloons) and their descriptions."""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw

from ..canvas import COLOURS, Sizing, canvas_size, gradient_field, jitter, lighting
from ..conversations import QA
from ..vocab import NUMBER_WORDS
from .base import Drawn

_TIMES = {
    "day": ((110, 170, 235), (200, 230, 255)),
    "sunset": ((240, 130, 70), (250, 210, 140)),
    "night": ((12, 18, 50), (40, 50, 100)),
    "overcast": ((150, 155, 165), (205, 208, 212)),
}
_GROUNDS = {"grass": (70, 150, 60), "sand": (220, 195, 130), "snow": (236, 240, 246),
            "dirt": (120, 90, 60)}
_HOUSE_COLOURS = ("red", "blue", "yellow", "white", "orange", "purple", "pink", "brown")
_ROOF_COLOURS = ("brown", "gray", "black", "red")
_BALLOON_COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "pink")


def _where(x: float, w: float) -> str:
    return "on the left" if x < w / 3 else "on the right" if x > 2 * w / 3 else "in the middle"


def _sky(rng, w, h, time):
    top, bottom = (np.asarray(jitter(c, rng, 18), np.float32) for c in _TIMES[time])
    t = gradient_field(rng, w, h)[..., None] if rng.random() < 0.5 else \
        np.broadcast_to((np.arange(h, dtype=np.float32) / max(h - 1, 1))[:, None, None], (h, w, 1))
    return Image.fromarray((top * (1 - t) + bottom * t).astype(np.uint8), "RGB")


def draw_scene(rng: random.Random, sizing: Sizing) -> Drawn:
    w, h = canvas_size(rng, sizing, aspect=(1.1, 1.7))
    time = rng.choice(list(_TIMES))
    ground = rng.choice(list(_GROUNDS))
    horizon = int(h * rng.uniform(0.38, 0.72))
    img = _sky(rng, w, h, time)
    draw = ImageDraw.Draw(img)
    spec: dict = {"time": time, "ground": ground, "houses": [], "trees": [], "clouds": 0,
                  "balloons": [], "light": None, "mountains": 0, "lake": None}
    if time != "overcast" and rng.random() < 0.8:
        lx, ly, lr = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.3) * horizon + 8, min(w, h) * rng.uniform(0.04, 0.09)
        light = "moon" if time == "night" else "sun"
        draw.ellipse([lx - lr, ly - lr, lx + lr, ly + lr],
                     fill=(240, 240, 210) if light == "moon" else (255, 215, 60))
        spec["light"] = (light, _where(lx, w))
    if rng.random() < 0.45:
        tone = jitter(rng.choice([(110, 120, 140), (90, 100, 150), (130, 110, 130), (80, 90, 80)]), rng, 15)
        for _ in range(rng.randint(1, 3)):
            mx, mw = rng.uniform(0, 1) * w, rng.uniform(0.25, 0.6) * w
            top = horizon - rng.uniform(0.25, 0.75) * horizon
            base = horizon + 0.12 * h + 2   # below the lowest possible ground line
            draw.polygon([(mx - mw / 2, base), (mx, top), (mx + mw / 2, base)], fill=tone)
            spec["mountains"] += 1
    for _ in range(rng.randint(0, 3)):
        cx, cy, s = rng.uniform(0.1, 0.9) * w, rng.uniform(0.15, 0.55) * horizon, min(w, h) * 0.05
        colour = (250, 250, 250) if time != "night" else (120, 125, 140)
        for dx in (-1.1, 0, 1.1):
            draw.ellipse([cx + dx * s - s, cy - s * 0.7, cx + dx * s + s, cy + s * 0.7], fill=colour)
        spec["clouds"] += 1
    amp, freq, phase = rng.uniform(0, 0.12) * h, rng.uniform(0.5, 2.5), rng.uniform(0, 2 * math.pi)

    def ground_y(x: float) -> float:
        return horizon + amp * math.sin(2 * math.pi * freq * x / w + phase)

    ground_colour = jitter(_GROUNDS[ground], rng, 14)
    draw.polygon([(0, h), *[(x, ground_y(x)) for x in range(0, w + 8, 8)], (w, h)], fill=ground_colour)
    if rng.random() < 0.35:
        lx, ly = rng.uniform(0.2, 0.8) * w, rng.uniform(0.75, 0.92) * h
        lw, lh = rng.uniform(0.15, 0.3) * w, rng.uniform(0.05, 0.1) * h
        draw.ellipse([lx - lw, ly - lh, lx + lw, ly + lh], fill=jitter((60, 120, 200), rng, 20))
        spec["lake"] = _where(lx, w)
    slots = list(range(6))
    rng.shuffle(slots)
    slot_w = w / 6
    for _ in range(rng.randint(0, 3)):
        col, roof = rng.choice(_HOUSE_COLOURS), rng.choice(_ROOF_COLOURS)
        x = slot_w * (slots.pop() + 0.5)
        hw, hh = slot_w * 0.4, (h - horizon) * rng.uniform(0.35, 0.55)
        base_y = ground_y(x) + (h - horizon) * 0.3
        draw.rectangle([x - hw, base_y - hh, x + hw, base_y], fill=jitter(COLOURS[col], rng, 10),
                       outline=(30, 30, 30))
        draw.polygon([(x - hw * 1.2, base_y - hh), (x + hw * 1.2, base_y - hh), (x, base_y - hh * 1.9)],
                     fill=jitter(COLOURS[roof], rng, 10))
        draw.rectangle([x - hw * 0.2, base_y - hh * 0.5, x + hw * 0.2, base_y], fill=(70, 45, 25))
        spec["houses"].append((col, roof, _where(x, w)))
    for _ in range(rng.randint(0, 4)):
        if not slots:
            break
        x = slot_w * (slots.pop() + rng.uniform(0.3, 0.7))
        base_y = ground_y(x) + (h - horizon) * rng.uniform(0.2, 0.5)
        th, cr = (h - horizon) * 0.35, slot_w * rng.uniform(0.25, 0.4)
        draw.rectangle([x - cr * 0.18, base_y - th, x + cr * 0.18, base_y], fill=(100, 65, 30))
        draw.ellipse([x - cr, base_y - th - cr * 1.6, x + cr, base_y - th + cr * 0.3],
                     fill=jitter((40, 120, 50), rng, 20))
        spec["trees"].append(_where(x, w))
    for _ in range(rng.randint(0, 3)):
        col = rng.choice(_BALLOON_COLOURS)
        bx, by, br = rng.uniform(0.08, 0.92) * w, rng.uniform(0.2, 0.7) * horizon, min(w, h) * 0.035
        draw.line([(bx, by + br), (bx + rng.uniform(-5, 5), by + br * 3.5)], fill=(60, 60, 60))
        draw.ellipse([bx - br * 0.8, by - br, bx + br * 0.8, by + br], fill=jitter(COLOURS[col], rng, 10))
        spec["balloons"].append(col)
    if not spec["houses"] and not spec["trees"]:
        x = rng.uniform(0.2, 0.8) * w
        draw.rectangle([x - 3, ground_y(x) - 2, x + 3, ground_y(x) + (h - horizon) * 0.3], fill=(90, 90, 90))
        spec["post"] = _where(x, w)
    img = lighting(img, rng, (10, 60))
    return Drawn(img, _caption_qas(rng, spec), spec)


def _count(n: int, noun: str) -> str:
    return f"{NUMBER_WORDS[n]} {noun}{'' if n == 1 else 's'}"


def describe(spec: dict, rng: random.Random) -> str:
    time_words = {"day": "a sunny daytime", "sunset": "an evening sunset", "night": "a night-time",
                  "overcast": "an overcast"}
    sent = [f"The image shows {time_words[spec['time']]} landscape with the {spec['ground']} "
            f"ground stretching below the sky."]
    if spec["light"]:
        sent.append(f"A {spec['light'][0]} shines in the sky {spec['light'][1]}.")
    if spec["mountains"]:
        sent.append(f"{'A mountain rises' if spec['mountains'] == 1 else 'Mountains rise'} in the background.")
    if spec["clouds"]:
        sent.append(f"There {'is' if spec['clouds'] == 1 else 'are'} {_count(spec['clouds'], 'cloud')} "
                    f"in the sky.")
    if spec["houses"]:
        parts = [f"a {c} house with a {r} roof {where}" for c, r, where in spec["houses"]]
        sent.append(f"The scene contains {_count(len(parts), 'house')}: " + "; ".join(parts) + ".")
    if spec["trees"]:
        sent.append(f"{_count(len(spec['trees']), 'tree').capitalize()} with green crowns "
                    f"{'stands' if len(spec['trees']) == 1 else 'stand'} on the ground.")
    if spec["balloons"]:
        sent.append(f"{_count(len(spec['balloons']), 'balloon').capitalize()} "
                    f"({', '.join(spec['balloons'])}) {'floats' if len(spec['balloons']) == 1 else 'float'} "
                    f"above the ground.")
    if spec["lake"]:
        sent.append(f"A small blue lake lies in the foreground {spec['lake']}.")
    if spec.get("post"):
        sent.append(f"A single gray post stands {spec['post']}.")
    if rng.random() < 0.5:
        sent.append("The overall style is simple and flat, like a children's illustration.")
    return " ".join(sent)


def _caption_qas(rng: random.Random, spec: dict) -> list[QA]:
    q = rng.choice(["Describe the image in detail.", "Provide a detailed description of this picture.",
                    "What is shown in this image? Please describe it thoroughly.",
                    "Write a detailed caption for the image."])
    wrong_spec = dict(spec, ground=rng.choice([g for g in _GROUNDS if g != spec["ground"]]))
    state = rng.getstate()
    answer = describe(spec, rng)
    rng.setstate(state)
    qas = [QA(q, answer, wrong=describe(wrong_spec, rng))]
    n = len(spec["houses"])
    qas.append(QA("How many houses are in the picture?", str(n), wrong=str(n + 1)))
    qas.append(QA("What is the ground covered with?", spec["ground"],
                  wrong=rng.choice([g for g in _GROUNDS if g != spec["ground"]])))
    return qas


def brief_caption(spec: dict) -> str:
    things = []
    if spec["houses"]:
        things.append(", ".join(f"a {c} house" for c, _, _ in spec["houses"][:2]))
    if spec["trees"]:
        things.append(_count(len(spec["trees"]), "tree"))
    if spec["balloons"]:
        things.append(_count(len(spec["balloons"]), "balloon"))
    if not things:
        things.append("an empty field")
    sky = {"day": "a clear blue sky", "sunset": "a sunset sky", "night": "a night sky",
           "overcast": "a gray sky"}[spec["time"]]
    return f"{' and '.join(things).capitalize()} under {sky}, on {spec['ground']}."


def draw_brief(rng: random.Random, sizing: Sizing) -> Drawn:
    drawn = draw_scene(rng, sizing)
    spec = drawn.spec
    q = rng.choice(["Write a short caption for the image.", "Give a one-sentence caption.",
                    "Caption this image briefly."])
    time_q = QA("What time of day does the scene show?",
                {"day": "Daytime.", "sunset": "Sunset.", "night": "Night.", "overcast": "Daytime, overcast."}[spec["time"]],
                wrong="Night." if spec["time"] != "night" else "Daytime.")
    wrong_spec = dict(spec, time=rng.choice([t for t in _TIMES if t != spec["time"]]))
    qas = [QA(q, brief_caption(spec), wrong=brief_caption(wrong_spec)), time_q, drawn.qas[1]]
    return Drawn(drawn.image, qas, spec)
