"""Code & math images: geometry figures with given measures, rendered expressions, code snippets."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from .. import fonts
from ..canvas import Sizing, background, canvas_size, jitter, lighting, paper
from ..conversations import QA, fmt_num
from ..vocab import OCR_WORDS
from .base import Drawn

_TRIPLES = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41))


def _label(draw, xy, text, font, ink):
    draw.text((xy[0] - font.getlength(text) / 2, xy[1] - font.size / 2 - 1), text, fill=ink, font=font)


def draw_geometry(rng: random.Random, sizing: Sizing) -> Drawn:
    w, h = canvas_size(rng, sizing, aspect=(1.0, 1.6))
    img = paper(rng, w, h) if rng.random() < 0.6 else background(rng, w, h, "light", noise=0.0)[0]
    draw = ImageDraw.Draw(img)
    ink = rng.choice([(20, 20, 20), (20, 30, 110), (110, 20, 20)])
    f = fonts.pick(rng, int(min(w, h) * 0.07), fonts.PLAIN_FONTS)
    lw = rng.choice([1, 2, 3])
    unit = rng.choice(["cm", "m", "in", "units", "mm"])
    kind = rng.choice(["right_triangle", "rectangle", "angles", "circle"])
    fill = jitter((220, 230, 250), rng, 25) if rng.random() < 0.5 else None
    qas: list[QA] = []
    if kind == "right_triangle":
        a, b, c = rng.choice(_TRIPLES)
        m = rng.randint(1, 3)
        a, b, c = a * m, b * m, c * m
        if rng.random() < 0.5:
            a, b = b, a
        s = min(w * 0.6 / max(a, b), h * 0.6 / max(a, b))
        x0, y0 = w * 0.2, h * 0.82
        p0, p1, p2 = (x0, y0), (x0 + a * s, y0), (x0, y0 - b * s)
        draw.polygon([p0, p1, p2], outline=ink, fill=fill, width=lw)
        q = 8
        draw.line([(x0 + q, y0), (x0 + q, y0 - q), (x0, y0 - q)], fill=ink, width=1)
        _label(draw, ((p0[0] + p1[0]) / 2, y0 + f.size * 0.8), f"{a} {unit}", f, ink)
        _label(draw, (x0 - f.getlength(f"{b} {unit}") / 2 - 6, (p0[1] + p2[1]) / 2), f"{b} {unit}", f, ink)
        _label(draw, ((p1[0] + p2[0]) / 2 + f.size * 1.2, (p1[1] + p2[1]) / 2 - f.size * 0.6), "c", f, ink)
        qas.append(QA("Find the length of the hypotenuse c of the right triangle.",
                      f"By the Pythagorean theorem, c = sqrt({a}^2 + {b}^2) = sqrt({a * a + b * b}) = {c} {unit}.",
                      wrong=f"c = {c + rng.randint(1, 4)} {unit}."))
        area = fmt_num(a * b / 2)
        qas.append(QA("What is the area of the triangle?",
                      f"Area = (1/2) x {a} x {b} = {area} square {unit}.", wrong=f"{a * b} square {unit}."))
        spec = {"kind": kind, "legs": (a, b), "hypotenuse": c}
    elif kind == "rectangle":
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        if a == b:
            b += 1
        s = min(w * 0.6 / a, h * 0.55 / b)
        x0, y0 = (w - a * s) / 2, (h - b * s) / 2
        draw.rectangle([x0, y0, x0 + a * s, y0 + b * s], outline=ink, fill=fill, width=lw)
        _label(draw, (w / 2, y0 + b * s + f.size * 0.8), f"{a} {unit}", f, ink)
        _label(draw, (x0 + a * s + f.getlength(f"{b} {unit}") / 2 + 6, h / 2), f"{b} {unit}", f, ink)
        qas.append(QA("What is the perimeter of the rectangle?",
                      f"Perimeter = 2 x ({a} + {b}) = {2 * (a + b)} {unit}.", wrong=f"{a * b} {unit}."))
        qas.append(QA("What is the area of the rectangle?", f"{a * b} square {unit}",
                      wrong=f"{2 * (a + b)} square {unit}"))
        spec = {"kind": kind, "sides": (a, b)}
    elif kind == "angles":
        A, B = rng.randint(30, 80), rng.randint(30, 80)
        C = 180 - A - B
        base = w * 0.6
        x0, y0 = w * 0.2, h * 0.8
        # apex from the two base angles (law of sines on a base of length `base`)
        ta, tb = math.tan(math.radians(A)), math.tan(math.radians(B))
        px = base * tb / (ta + tb)
        py = px * ta
        sc = min(1.0, (h * 0.6) / py)
        p0, p1, p2 = (x0, y0), (x0 + base * sc, y0), (x0 + px * sc, y0 - py * sc)
        draw.polygon([p0, p1, p2], outline=ink, fill=fill, width=lw)
        _label(draw, (p0[0] + f.size * 1.6, p0[1] - f.size * 0.7), f"{A}°", f, ink)
        _label(draw, (p1[0] - f.size * 1.6, p1[1] - f.size * 0.7), f"{B}°", f, ink)
        _label(draw, (p2[0], p2[1] + f.size * 1.3), "x", f, ink)
        qas.append(QA("Find the value of x in the triangle.",
                      f"The angles of a triangle sum to 180°, so x = 180° - {A}° - {B}° = {C}°.",
                      wrong=f"x = {C + rng.choice([-10, 10])}°."))
        qas.append(QA("What is the measure of the largest angle of the triangle?", f"{max(A, B, C)}°",
                      wrong=f"{min(A, B, C)}°"))
        spec = {"kind": kind, "angles": (A, B, C)}
    else:
        r = rng.randint(2, 25)
        rad = min(w, h) * rng.uniform(0.2, 0.34)
        cx, cy = w * rng.uniform(0.36, 0.64), h * rng.uniform(0.4, 0.6)
        draw.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], outline=ink, fill=fill, width=lw)
        draw.line([(cx, cy), (cx + rad, cy)], fill=ink, width=lw)
        draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=ink)
        _label(draw, (cx + rad / 2, cy - f.size * 0.8), f"r = {r} {unit}", f, ink)
        area = fmt_num(round(3.14 * r * r, 2))
        circ = fmt_num(round(2 * 3.14 * r, 2))
        qas.append(QA("What is the area of the circle? Use 3.14 for pi.",
                      f"Area = 3.14 x {r}^2 = {area} square {unit}.", wrong=f"{circ} square {unit}."))
        qas.append(QA("What is the circumference of the circle? Use 3.14 for pi.",
                      f"Circumference = 2 x 3.14 x {r} = {circ} {unit}.", wrong=f"{area} {unit}."))
        spec = {"kind": kind, "radius": r}
    rng.shuffle(qas)
    return Drawn(img, qas, spec)


def _expression(rng: random.Random) -> tuple[str, int, str]:
    """(display text, value, worked steps) using only integer arithmetic."""
    a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 12)
    form = rng.randrange(6)
    if form == 0:
        return f"{a} + {b} × {c}", a + b * c, f"{b} × {c} = {b * c}, then {a} + {b * c} = {a + b * c}"
    if form == 1:
        return f"({a} + {b}) × {c}", (a + b) * c, f"{a} + {b} = {a + b}, then {a + b} × {c} = {(a + b) * c}"
    if form == 2:
        return f"{a} × {c} − {b}", a * c - b, f"{a} × {c} = {a * c}, then {a * c} − {b} = {a * c - b}"
    if form == 3:
        q = rng.randint(2, 15)
        return f"{q * c} ÷ {c} + {a}", q + a, f"{q * c} ÷ {c} = {q}, then {q} + {a} = {q + a}"
    if form == 4:
        return f"{c}² + {a}", c * c + a, f"{c}² = {c * c}, then {c * c} + {a} = {c * c + a}"
    return f"{a} − {b} + {c}", a - b + c, f"{a} − {b} = {a - b}, then {a - b} + {c} = {a - b + c}"


def draw_arith(rng: random.Random, sizing: Sizing) -> Drawn:
    w, h = canvas_size(rng, sizing, aspect=(1.3, 1.9))
    img, mean = background(rng, w, h, rng.choice(["light", "light", "dark"]), noise=0.0)
    draw = ImageDraw.Draw(img)
    n = rng.randint(1, 2)
    exprs = [_expression(rng) for _ in range(n)]
    name = rng.choice(fonts.TEXT_FONTS)
    ink = (245, 245, 245) if sum(mean) < 300 else (20, 20, 20)
    lines = [f"{t} = ?" if n == 1 else f"({chr(97 + i)}) {t} = ?" for i, (t, _, _) in enumerate(exprs)]
    f = fonts.fit_font(name, max(lines, key=len), w * 0.85, int(h * 0.18))
    total_h = len(lines) * (f.size + 8)
    y = rng.uniform(h * 0.08, max(h * 0.08, h - total_h - h * 0.08))
    for ln in lines:
        x = rng.uniform(w * 0.05, max(w * 0.05, w - f.getlength(ln) - w * 0.05))
        draw.text((x, y), ln, fill=ink, font=f)
        y += f.size + 8
    qas: list[QA] = []
    for i, (text, value, steps) in enumerate(exprs):
        which = "the expression" if n == 1 else f"expression ({chr(97 + i)})"
        ans = str(value) if rng.random() < 0.4 else f"{steps}. The answer is {value}."
        qas.append(QA(f"Compute the value of {which} shown in the image.", ans, wrong=str(value + rng.choice([-2, -1, 1, 3]))))
    img = lighting(img, rng, (8, 50))
    return Drawn(img, qas, {"expressions": [(t, v) for t, v, _ in exprs]})


def _snippet(rng: random.Random) -> tuple[list[str], str]:
    kind = rng.randrange(5)
    if kind == 0:
        a, n, m = rng.randint(0, 9), rng.randint(3, 7), rng.randint(1, 4)
        return [f"total = {a}", f"for i in range({n}):", f"    total += i * {m}", "print(total)"], \
            str(a + m * n * (n - 1) // 2)
    if kind == 1:
        nums = [rng.randint(1, 30) for _ in range(rng.randint(4, 6))]
        return [f"nums = {nums}", "evens = [x for x in nums if x % 2 == 0]", "print(sum(evens))"], \
            str(sum(x for x in nums if x % 2 == 0))
    if kind == 2:
        word = rng.choice([wd for wd in OCR_WORDS if wd.isalpha() and wd.isascii()])
        return [f's = "{word}"', "print(s[::-1].upper())"], word[::-1].upper()
    if kind == 3:
        a, b, c = rng.randint(2, 9), rng.randint(1, 20), rng.randint(2, 12)
        return ["def f(x):", f"    return x * {a} - {b}", "", f"print(f({c}))"], str(c * a - b)
    start = rng.randint(5, 500)
    n, steps = start, 0
    while n > 1:
        n //= 2
        steps += 1
    return [f"n = {start}", "steps = 0", "while n > 1:", "    n //= 2", "    steps += 1", "print(steps)"], \
        str(steps)


def draw_code(rng: random.Random, sizing: Sizing) -> Drawn:
    code, output = _snippet(rng)
    w, h = canvas_size(rng, sizing, aspect=(1.2, 1.8))
    theme = rng.choice([(30, 32, 40), (40, 44, 52), (0, 43, 54), (39, 40, 34), (253, 246, 227),
                        (255, 255, 255), (245, 245, 245), (232, 240, 232)])
    dark = sum(theme) < 300
    bg = jitter(theme, rng, 8)
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    top = h * rng.uniform(0.04, 0.12)
    if rng.random() < 0.5:   # editor window title bar
        bar = int(h * rng.uniform(0.08, 0.13))
        draw.rectangle([0, 0, w, bar], fill=jitter((70, 70, 78) if dark else (210, 210, 214), rng, 10))
        for k, c in enumerate(((236, 95, 90), (245, 190, 80), (98, 197, 85))):
            draw.ellipse([8 + k * bar * 0.6, bar * 0.3, 8 + k * bar * 0.6 + bar * 0.4, bar * 0.7], fill=c)
        top += bar
    name = rng.choice(fonts.MONO_FONTS)
    numbers = rng.random() < 0.5
    longest = max(code, key=len)
    left = w * rng.uniform(0.03, 0.12)
    f = fonts.fit_font(name, ("00  " if numbers else "") + longest, w - left - w * 0.04,
                       int((h - top) / (len(code) + 1.5)))
    f = fonts.font(name, max(7, int(f.size * rng.uniform(0.6, 1.0))))
    ink = (220, 220, 210) if dark else (30, 30, 30)
    kw = (120, 180, 255) if dark else (0, 60, 170)
    y = top
    for i, line in enumerate(code):
        x = left
        if numbers:
            draw.text((x, y), f"{i + 1:>2}", fill=(130, 130, 130), font=f)
            x += f.getlength("00  ")
        first = line.lstrip().split(" ")[0].split("(")[0]
        colour = kw if first in ("for", "while", "def", "return", "print") else ink
        draw.text((x, y), line, fill=colour, font=f)
        y += f.size + 4
    img = lighting(img, rng, (5, 50))
    qas = [QA(rng.choice(["What is the output of this code?", "What does this program print?",
                          "Run the code in the image mentally. What is printed?"]),
              output if rng.random() < 0.5 else f"The program prints {output}.",
              wrong=output[::-1] if not output.isdigit() else str(int(output) + 1)),
           QA("How many lines of code are shown?", str(len(code)), wrong=str(len(code) + 1))]
    return Drawn(img, qas, {"code": code, "output": output})
