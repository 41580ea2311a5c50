"""Chart-domain images: bar, line and pie charts with known values and labelled data."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from .. import fonts
from ..canvas import COLOURS, Sizing, canvas_size, jitter, lighting
from ..conversations import QA, fmt_num
from ..vocab import CATEGORY_NOUNS, CATEGORY_SETS, METRICS, SERIES_NAMES, UNITS
from .base import Drawn

_BAR_COLOURS = [COLOURS[c] for c in ("blue", "orange", "green", "red", "purple", "brown",
                                     "pink", "gray", "cyan")]


def _frame(rng: random.Random, sizing: Sizing, aspect=(0.95, 1.7)):
    w, h = canvas_size(rng, sizing, aspect=aspect)
    dark = rng.random() < 0.2
    if dark:
        bg = rng.choice([(28, 30, 38), (20, 24, 30), (40, 36, 48), (16, 40, 52)])
    else:
        bg = rng.choice([(255, 255, 255), (255, 255, 255), (248, 248, 242), (240, 244, 250),
                         (252, 246, 236), (235, 235, 235), (226, 236, 226)])
    img = Image.new("RGB", (w, h), jitter(bg, rng, 4))
    base = max(8, int(min(w, h) * rng.uniform(0.04, 0.052)))
    family = rng.choice(fonts.PLAIN_FONTS[:3])
    bold = rng.choice(fonts.BOLD_FONTS)
    ink = (230, 230, 230) if dark else (30, 30, 30)
    return img, ImageDraw.Draw(img), w, h, base, family, bold, ink


def _labels(rng: random.Random, k: int) -> tuple[list[str], str]:
    kind = rng.choice([c for c, labels in CATEGORY_SETS.items() if len(labels) >= k])
    pool = list(CATEGORY_SETS[kind])
    if kind == "month":
        start = rng.randint(0, len(pool) - k)
        return pool[start:start + k], CATEGORY_NOUNS[kind]
    return rng.sample(pool, k), CATEGORY_NOUNS[kind]


def _values(rng: random.Random, k: int) -> list[float]:
    decimals = rng.random() < 0.3
    vals: list[float] = []
    while len(vals) < k:
        v = round(rng.uniform(0.5, 40.0), 1) if decimals else float(rng.randint(2, 95))
        if v not in vals:
            vals.append(v)
    return vals


def _title(draw, w, text, font, ink, y=4):
    f = fonts.fit_font(font.path.split("/")[-1], text, w * 0.94, font.size)
    tw = f.getlength(text)
    draw.text(((w - tw) / 2, y), text, fill=ink, font=f)
    return y + f.size + 6


def category_qas(rng: random.Random, labels: list[str], values: list[float], metric: str,
                 noun: str, pct: bool = False) -> list[QA]:
    u = "%" if pct else ""
    shown = [fmt_num(v) + u for v in values]
    qas: list[QA] = []
    i = rng.randrange(len(labels))
    what = "percentage" if pct else f"{metric.lower()}"
    qas.append(QA(f"What is the {what} of {labels[i]}?", shown[i],
                  wrong=fmt_num(values[(i + 1) % len(values)]) + u, short=shown[i], form="short"))
    hi, lo = max(values), min(values)
    if values.count(hi) == 1:
        j = values.index(hi)
        ans = labels[j] if rng.random() < 0.6 else f"{labels[j]} has the highest value, {shown[j]}."
        qas.append(QA(f"Which {noun} has the highest {'share' if pct else metric.lower()}?", ans,
                      wrong=labels[values.index(lo)], short=labels[j], short_wrong=labels[values.index(lo)],
                      form="short", options=tuple(labels)))
    if values.count(lo) == 1:
        j = values.index(lo)
        qas.append(QA(f"Which {noun} has the lowest {'share' if pct else metric.lower()}?", labels[j],
                      wrong=labels[values.index(hi)], short=labels[j], form="short", options=tuple(labels)))
    a, b = rng.sample(range(len(labels)), 2)
    if values[a] < values[b]:
        a, b = b, a
    diff = fmt_num(round(values[a] - values[b], 2))
    ans = diff if rng.random() < 0.5 else \
        f"{labels[a]} is {shown[a]} and {labels[b]} is {shown[b]}, so the difference is " \
        f"{fmt_num(values[a])} - {fmt_num(values[b])} = {diff}."
    qas.append(QA(f"What is the difference between {labels[a]} and {labels[b]}?", ans, short=diff, form="short"))
    a, b = rng.sample(range(len(labels)), 2)
    total = fmt_num(round(values[a] + values[b], 2))
    qas.append(QA(f"What is the {'combined share' if pct else 'sum'} of {labels[a]} and {labels[b]}?",
                  total + u, short=total + u, form="short"))
    if not pct:
        avg = fmt_num(round(sum(values) / len(values), 2))
        qas.append(QA(f"What is the average {metric.lower()} across all {noun} categories? "
                      f"Round to two decimals.", avg, short=avg, form="short"))
        a, b = rng.sample(range(len(labels)), 2)
        yes = values[a] > values[b]
        qas.append(QA(f"Is the value of {labels[a]} greater than that of {labels[b]}?",
                      "Yes" if yes else "No", wrong="No" if yes else "Yes", short="Yes" if yes else "No",
                      form="short"))
    rng.shuffle(qas)
    return qas


def draw_bar(rng: random.Random, sizing: Sizing) -> Drawn:
    img, draw, w, h, base, family, bold, ink = _frame(rng, sizing)
    k = rng.randint(3, 7)
    labels, noun = _labels(rng, k)
    values = _values(rng, k)
    metric = rng.choice(METRICS)
    unit = rng.choice(UNITS)
    f = fonts.font(family, base)
    small = fonts.font(family, max(7, base - 2))
    top = _title(draw, w, f"{metric}{unit} by {noun}", fonts.font(bold, base + 2), ink)
    single = rng.random() < 0.6
    colour = jitter(rng.choice(_BAR_COLOURS), rng, 10)
    colours = [colour if single else jitter(_BAR_COLOURS[(i + rng.randint(0, 8)) % 9], rng, 10)
               for i in range(k)]
    vmax = max(values) * rng.uniform(1.12, 1.3)
    grid = rng.random() < 0.6
    if rng.random() < 0.68:   # vertical bars
        left, right, bottom = w * 0.1, w - w * 0.05, h - base * 2.2
        top += base
        draw.line([(left, top), (left, bottom), (right, bottom)], fill=ink, width=1)
        if grid:
            for t in range(1, 5):
                y = bottom - (bottom - top) * t / 5
                draw.line([(left + 1, y), (right, y)], fill=(215, 215, 215), width=1)
        slot = (right - left) / k
        bw = slot * rng.uniform(0.45, 0.8)
        for i, (lab, v) in enumerate(zip(labels, values)):
            cx = left + slot * (i + 0.5)
            y = min(bottom - 2, bottom - (bottom - top) * v / vmax)
            draw.rectangle([cx - bw / 2, y, cx + bw / 2, bottom - 1], fill=colours[i])
            txt = fmt_num(v)
            draw.text((cx - small.getlength(txt) / 2, y - small.size - 2), txt, fill=ink, font=small)
            lf = fonts.fit_font(family, lab, slot * 0.95, base)
            draw.text((cx - lf.getlength(lab) / 2, bottom + 3), lab, fill=ink, font=lf)
    else:
        lab_w = max(f.getlength(lab) for lab in labels)
        left, right, bottom = min(w * 0.35, lab_w + 10), w - w * 0.1, h - h * 0.05
        top += base * 0.5
        draw.line([(left, top), (left, bottom)], fill=ink, width=1)
        slot = (bottom - top) / k
        bh = slot * rng.uniform(0.45, 0.8)
        for i, (lab, v) in enumerate(zip(labels, values)):
            cy = top + slot * (i + 0.5)
            x = max(left + 2, left + (right - left) * v / vmax)
            draw.rectangle([left + 1, cy - bh / 2, x, cy + bh / 2], fill=colours[i])
            txt = fmt_num(v)
            draw.text((x + 3, cy - small.size / 2 - 1), txt, fill=ink, font=small)
            lf = fonts.fit_font(family, lab, left - 6, base)
            draw.text((left - 4 - lf.getlength(lab), cy - lf.size / 2 - 1), lab, fill=ink, font=lf)
    img = lighting(img, rng, (8, 45))
    qas = category_qas(rng, labels, values, metric, noun)
    qas.append(QA("How many bars are there in the chart?", str(k), wrong=str(k + 1), short=str(k), form="short"))
    return Drawn(img, qas, {"kind": "bar", "labels": labels, "values": values, "metric": metric})


def draw_line(rng: random.Random, sizing: Sizing) -> Drawn:
    img, draw, w, h, base, family, bold, ink = _frame(rng, sizing)
    k = rng.randint(4, 8)
    start = rng.randint(1995, 2016)
    years = [str(start + i) for i in range(k)]
    n_series = 1 if rng.random() < 0.7 else 2
    names = rng.sample(SERIES_NAMES, n_series)
    series = [_values(rng, k) for _ in range(n_series)]
    metric = rng.choice(METRICS)
    small = fonts.font(family, max(7, base - 2))
    top = _title(draw, w, f"{metric} {years[0]}-{years[-1]}", fonts.font(bold, base + 2), ink)
    colours = [jitter(c, rng, 10) for c in rng.sample(_BAR_COLOURS[:5], n_series)]
    if n_series == 2:
        x = w * 0.12
        for name, col in zip(names, colours):
            draw.rectangle([x, top + 3, x + base, top + 3 + base * 0.6], fill=col)
            draw.text((x + base + 3, top - 1), name, fill=ink, font=small)
            x += base + 12 + small.getlength(name)
        top += base + 4
    vmax = max(max(s) for s in series) * rng.uniform(1.15, 1.3)
    left, right, bottom = w * 0.08, w - w * 0.06, h - base * 2.2
    top += base
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=ink, width=1)
    step = (right - left) / k
    width = rng.choice([1, 2, 3])
    for si, (vals, col) in enumerate(zip(series, colours)):
        pts = [(left + step * (i + 0.5), bottom - (bottom - top) * v / vmax) for i, v in enumerate(vals)]
        draw.line(pts, fill=col, width=width)
        for (x, y), v in zip(pts, vals):
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=col)
            txt = fmt_num(v)
            dy = -small.size - 3 if si == 0 else 3
            draw.text((x - small.getlength(txt) / 2, y + dy), txt, fill=col if n_series == 2 else ink,
                      font=small)
    for i, yr in enumerate(years):
        lf = fonts.fit_font(family, yr, step * 0.95, base)
        cx = left + step * (i + 0.5)
        draw.text((cx - lf.getlength(yr) / 2, bottom + 3), yr, fill=ink, font=lf)
    img = lighting(img, rng, (8, 45))
    s = rng.randrange(n_series)
    vals, name = series[s], names[s]
    of = f" for {name}" if n_series == 2 else ""
    qas: list[QA] = []
    i = rng.randrange(k)
    qas.append(QA(f"What was the {metric.lower()}{of} in {years[i]}?", fmt_num(vals[i]),
                  wrong=fmt_num(vals[(i + 1) % k]), short=fmt_num(vals[i]), form="short"))
    j = vals.index(max(vals))
    qas.append(QA(f"In which year was the {metric.lower()}{of} the highest?", years[j],
                  wrong=years[vals.index(min(vals))], short=years[j], form="short", options=tuple(years)))
    a, b = sorted(rng.sample(range(k), 2))
    trend = "increase" if vals[b] > vals[a] else "decrease"
    qas.append(QA(f"Did the {metric.lower()}{of} increase or decrease from {years[a]} to {years[b]}?",
                  f"It {trend}d from {fmt_num(vals[a])} to {fmt_num(vals[b])}.",
                  wrong=f"It {'decrease' if trend == 'increase' else 'increase'}d.",
                  short=f"{trend.capitalize()}d",
                  short_wrong=f"{'Decrease' if trend == 'increase' else 'Increase'}d", form="short"))
    diff = fmt_num(round(abs(vals[b] - vals[a]), 2))
    qas.append(QA(f"What is the difference in {metric.lower()}{of} between {years[a]} and {years[b]}?",
                  diff, short=diff, form="short"))
    if n_series == 2:
        i = rng.randrange(k)
        if series[0][i] != series[1][i]:
            win = names[0] if series[0][i] > series[1][i] else names[1]
            qas.append(QA(f"Which series had the higher value in {years[i]}?", win,
                          wrong=names[1] if win == names[0] else names[0], short=win, form="short",
                          options=tuple(names)))
    qas.append(QA("How many years are shown on the x-axis?", str(k), wrong=str(k - 1), short=str(k), form="short"))
    rng.shuffle(qas)
    return Drawn(img, qas, {"kind": "line", "years": years, "series": dict(zip(names, series))})


def _percentages(rng: random.Random, k: int) -> list[int]:
    while True:
        weights = [rng.uniform(0.3, 1.0) for _ in range(k)]
        pct = [max(4, round(100 * x / sum(weights))) for x in weights]
        pct[pct.index(max(pct))] += 100 - sum(pct)
        if min(pct) >= 4 and len(set(pct)) == k:
            return pct


def draw_pie(rng: random.Random, sizing: Sizing) -> Drawn:
    img, draw, w, h, base, family, bold, ink = _frame(rng, sizing, aspect=(1.05, 1.6))
    k = rng.randint(3, 6)
    labels, noun = _labels(rng, k)
    pct = _percentages(rng, k)
    metric = rng.choice(METRICS)
    small = fonts.font(family, max(7, base - 1))
    top = _title(draw, w, f"Share of {metric.lower()} by {noun}", fonts.font(bold, base + 2), ink)
    legend = rng.random() < 0.5
    donut = legend and rng.random() < 0.4
    radius = min((w * (0.3 if legend else 0.26)), (h - top) * 0.36) * rng.uniform(0.7, 1.0)
    cx = w * (rng.uniform(0.3, 0.4) if legend else rng.uniform(0.4, 0.6))
    cy = top + (h - top) * rng.uniform(0.42, 0.58)
    angle = rng.uniform(0, 360)
    colours = [jitter(c, rng, 10) for c in rng.sample(_BAR_COLOURS, k)]
    for i, p in enumerate(pct):
        sweep = 360 * p / 100
        draw.pieslice([cx - radius, cy - radius, cx + radius, cy + radius], angle, angle + sweep,
                      fill=colours[i], outline=img.getpixel((0, 0)))
        mid = math.radians(angle + sweep / 2)
        txt = f"{p}%" if legend else f"{labels[i]} {p}%"
        rr = radius * (0.74 if donut else 0.62 if legend else 1.12)
        tx, ty = cx + rr * math.cos(mid), cy + rr * math.sin(mid)
        tw = small.getlength(txt)
        if not legend:
            tx = tx - tw / 2 if abs(math.cos(mid)) < 0.3 else (tx if math.cos(mid) > 0 else tx - tw)
            tx = min(max(2, tx), w - tw - 2)
        else:
            tx -= tw / 2
        draw.text((tx, ty - small.size / 2), txt, fill=(255, 255, 255) if legend else ink, font=small)
        angle += sweep
    if donut:
        hole = radius * 0.45
        draw.ellipse([cx - hole, cy - hole, cx + hole, cy + hole], fill=img.getpixel((0, 0)))
    if legend:
        y = cy - k * (base + 4) / 2
        for lab, col in zip(labels, colours):
            draw.rectangle([w * 0.72, y + 2, w * 0.72 + base * 0.8, y + 2 + base * 0.8], fill=col)
            lf = fonts.fit_font(family, lab, w * 0.24 - base, base)
            draw.text((w * 0.72 + base + 2, y), lab, fill=ink, font=lf)
            y += base + 4
    img = lighting(img, rng, (8, 45))
    qas = category_qas(rng, labels, [float(p) for p in pct], metric, noun, pct=True)
    return Drawn(img, qas, {"kind": "pie", "labels": labels, "values": pct})


CHART_DRAWERS = {"bar": draw_bar, "line": draw_line, "pie": draw_pie}
