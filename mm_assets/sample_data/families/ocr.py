"""OCR-domain images: rendered words, text lines and document pages (forms, receipts, letters)."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from .. import fonts
from ..canvas import Sizing, background, canvas_size, ink_for, jitter, lighting, paper
from ..conversations import QA
from ..vocab import (CITIES, COMPANY_STEMS, COMPANY_SUFFIXES, FIRST_NAMES, ITEMS, LAST_NAMES,
                     LINE_PHRASES, OCR_WORDS, ORDINALS)
from .base import Drawn


def _text_layer(text_lines: list[str], font, ink, align: str, spacing: int) -> Image.Image:
    widths = [font.getlength(t) for t in text_lines]
    lh = font.size + spacing
    layer = Image.new("RGBA", (int(max(widths)) + 8, lh * len(text_lines) + 8), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    for i, (t, tw) in enumerate(zip(text_lines, widths)):
        x = 4 if align == "left" else 4 + (max(widths) - tw) / 2
        d.text((x, 4 + i * lh), t, fill=ink, font=font)
    return layer


def _render_block(rng: random.Random, sizing: Sizing, lines: list[str], fmt_panel: bool) -> Image.Image:
    """Text lines in one font, fitted into a random canvas, maybe on a sign panel, maybe rotated."""
    w, h = canvas_size(rng, sizing, aspect=(1.0, 1.8))
    img, mean = background(rng, w, h, rng.choice(["light", "light", "dark", "any"]))
    name = rng.choice(fonts.TEXT_FONTS)
    size = int(min(w, h) * rng.uniform(0.09, 0.16))
    longest = max(lines, key=len)
    f = fonts.fit_font(name, longest, w * 0.8, size)
    while f.size > 7 and (f.size + 4) * len(lines) > h * 0.78:
        f = fonts.font(name, f.size - 1)
    bg = mean
    if fmt_panel:
        panel = rng.choice([(250, 250, 245), (30, 70, 40), (20, 40, 110), (250, 215, 60), (200, 40, 40)])
        bg = panel
    ink = ink_for(bg, rng)
    layer = _text_layer(lines, f, ink + (255,), rng.choice(["left", "center"]), max(2, f.size // 4))
    if rng.random() < 0.35:
        layer = layer.rotate(rng.uniform(-8, 8), expand=True, resample=Image.BICUBIC)
    lw, lh = layer.size
    if lw > w * 0.94 or lh > h * 0.94:
        scale = min(w * 0.94 / lw, h * 0.94 / lh)
        layer = layer.resize((max(1, int(lw * scale)), max(1, int(lh * scale))), Image.BICUBIC)
        lw, lh = layer.size
    x = rng.randint(int(w * 0.03), max(int(w * 0.03), w - lw - int(w * 0.03)))
    y = rng.randint(int(h * 0.03), max(int(h * 0.03), h - lh - int(h * 0.03)))
    if fmt_panel:
        pad = max(4, f.size // 2)
        ImageDraw.Draw(img).rounded_rectangle(
            [max(0, x - pad), max(0, y - pad), min(w - 1, x + lw + pad), min(h - 1, y + lh + pad)],
            radius=pad, fill=jitter(bg, rng, 6), outline=rng.choice([None, (20, 20, 20), (240, 240, 240)]),
            width=2)
    img.paste(layer, (x, y), layer)
    return lighting(img, rng, (8, 55))


def draw_words(rng: random.Random, sizing: Sizing) -> Drawn:
    words = rng.sample(OCR_WORDS, rng.randint(2, 5))
    if rng.random() < 0.3:
        words = [wd.upper() if not any(c.isdigit() for c in wd) else wd for wd in words]
    split = rng.randint(1, len(words)) if len(words) > 3 else len(words)
    lines = [" ".join(words[:split]), " ".join(words[split:])] if split < len(words) else [" ".join(words)]
    img = _render_block(rng, sizing, lines, fmt_panel=rng.random() < 0.3)
    text = " ".join(words)
    qas: list[QA] = []
    other = rng.choice([wd for wd in OCR_WORDS if wd not in words])
    qas.append(QA(rng.choice(["What does the text say?", "What is written in the image?",
                              "Read the text in the image."]), text,
                  wrong=text.replace(words[-1], other), short=text, form="short"))
    i = rng.randrange(len(words))
    qas.append(QA(f"What is the {ORDINALS[i]} word?", words[i], wrong=words[i - 1] if i else other,
                  short=words[i], form="short"))
    qas.append(QA("What is the last word?", words[-1], wrong=words[0], short=words[-1], form="short"))
    qas.append(QA("How many words are written in the image?", str(len(words)),
                  wrong=str(len(words) + 1), short=str(len(words)), form="short"))
    rng.shuffle(qas)
    return Drawn(img, qas, {"words": words, "lines": lines})


def draw_lines(rng: random.Random, sizing: Sizing) -> Drawn:
    lines = rng.sample(LINE_PHRASES, rng.randint(2, 4))
    if rng.random() < 0.4:
        lines = [ln.title() for ln in lines]
    elif rng.random() < 0.3:
        lines = [ln.upper() for ln in lines]
    img = _render_block(rng, sizing, lines, fmt_panel=rng.random() < 0.5)
    qas: list[QA] = []
    i = rng.randrange(len(lines))
    qas.append(QA(f"What does the {ORDINALS[i]} line say?", lines[i], wrong=lines[i - 1], short=lines[i],
                  form="short"))
    qas.append(QA("Transcribe all the text in the image, line by line.", "\n".join(lines),
                  wrong="\n".join(reversed(lines))))
    qas.append(QA("What does the text say?", " ".join(lines)))
    i = rng.randrange(len(lines))
    word = max(lines[i].split(), key=len)
    if sum(word in ln.split() for ln in lines) == 1:
        qas.append(QA(f"Which line contains the word \"{word}\"?", f"The {ORDINALS[i]} line.",
                      wrong=f"The {ORDINALS[(i + 1) % len(lines)]} line."))
    qas.append(QA("How many lines of text are there?", str(len(lines)), wrong=str(len(lines) + 1),
                  short=str(len(lines)), form="short"))
    rng.shuffle(qas)
    return Drawn(img, qas, {"lines": lines})


# ---------------------------------------------------------------- documents

def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _company(rng: random.Random) -> str:
    return f"{rng.choice(COMPANY_STEMS)} {rng.choice(COMPANY_SUFFIXES)}"


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1962, 2004)}"


def _money(v: float) -> str:
    return f"${v:,.2f}"


def draw_document(rng: random.Random, sizing: Sizing, min_side: int | None = None) -> Drawn:
    """A form, invoice, receipt or letter; every answer is a string printed on the page."""
    w, h = canvas_size(rng, sizing, aspect=(0.62, 0.9), min_side=min_side)
    img = paper(rng, w, h)
    draw = ImageDraw.Draw(img)
    kind = rng.choice(["invoice", "receipt", "memo", "letter", "form"])
    name = rng.choice(fonts.PLAIN_FONTS)
    bold = rng.choice(fonts.BOLD_FONTS)
    base = max(7, int(w * rng.uniform(0.034, 0.045)))
    ink = rng.choice([(10, 10, 10), (25, 25, 60), (45, 35, 30)])
    mx = int(w * rng.uniform(0.06, 0.11))
    y = int(h * rng.uniform(0.04, 0.1))
    lh = base + max(3, base // 3)
    qas: list[QA] = []
    company = _company(rng)
    title = {"invoice": "INVOICE", "receipt": "RECEIPT", "memo": "MEMORANDUM", "letter": company,
             "form": rng.choice(["ORDER FORM", "REQUEST FORM", "TRAVEL FORM"])}[kind]
    tf = fonts.fit_font(bold, title, w - 2 * mx, base + 4)
    tx = mx if rng.random() < 0.5 else (w - tf.getlength(title)) / 2
    draw.text((tx, y), title, fill=ink, font=tf)
    if rng.random() < 0.5:   # logo block
        s = base * 2
        draw.rectangle([w - mx - s, y, w - mx, y + s], outline=ink, width=2,
                       fill=jitter((200, 200, 210), rng, 30))
    y += tf.size + lh
    qas.append(QA("What is the title of this document?", title.title() if kind != "letter" else title,
                  golds=(title, title.title()), tag="layout"))

    def field(label: str, value: str, question: str, tag: str = "form", golds=()) -> None:
        nonlocal y
        text = f"{label}: {value}"
        ff = fonts.fit_font(name, text, w - 2 * mx, base)
        draw.text((mx, y), f"{label}:", fill=ink, font=ff)
        draw.text((mx + ff.getlength(f"{label}: "), y), value, fill=ink, font=ff)
        y += lh
        qas.append(QA(question, value, golds=golds or (value,), tag=tag))

    date = _date(rng)
    person, other = _person(rng), _person(rng)
    if kind in ("invoice", "receipt", "form"):
        number = str(rng.randint(10000, 99999))
        field("Date", date, f"What is the date on the {kind}?")
        field("No.", number, f"What is the {kind} number?")
        if kind != "receipt":
            field("Bill to" if kind == "invoice" else "Name", person,
                  "Who is the invoice billed to?" if kind == "invoice" else "What name is written on the form?",
                  golds=(person, person.upper()))
        if kind == "form":
            city = rng.choice(CITIES)
            field("City", city, "Which city is given on the form?")
        y += lh // 2
        items = rng.sample(ITEMS, rng.randint(2, 4))
        prices = [round(rng.uniform(1.5, 250.0), 2) for _ in items]
        qty = [rng.randint(1, 9) for _ in items]
        draw.line([(mx, y), (w - mx, y)], fill=ink, width=1)
        y += 3
        for it, q, p in zip(items, qty, prices):
            ff = fonts.fit_font(name, f"{it}  x{q}  {_money(p * q)}", w - 2 * mx, base)
            draw.text((mx, y), f"{it}", fill=ink, font=ff)
            draw.text((mx + (w - 2 * mx) * 0.55, y), f"x{q}", fill=ink, font=ff)
            amount = _money(p * q)
            draw.text((w - mx - ff.getlength(amount), y), amount, fill=ink, font=ff)
            y += lh
        draw.line([(mx, y), (w - mx, y)], fill=ink, width=1)
        y += 3
        total = _money(sum(p * q for p, q in zip(prices, qty)))
        ff = fonts.fit_font(bold, f"TOTAL {total}", w - 2 * mx, base)
        draw.text((mx, y), "TOTAL", fill=ink, font=ff)
        draw.text((w - mx - ff.getlength(total), y), total, fill=ink, font=ff)
        y += lh
        i = rng.randrange(len(items))
        qas.append(QA(f"What is the amount for {items[i].lower()}?", _money(prices[i] * qty[i]),
                      golds=(_money(prices[i] * qty[i]), _money(prices[i] * qty[i])[1:]), tag="table/list"))
        qas.append(QA("What is the total amount?", total, golds=(total, total[1:]), tag="table/list"))
    else:
        if kind == "memo":
            field("To", person, "Who is the memo addressed to?", golds=(person,))
            field("From", other, "Who is the memo from?", golds=(other,))
            field("Date", date, "What is the date of the memo?")
            subject = rng.choice(LINE_PHRASES).capitalize()
            field("Subject", subject, "What is the subject of the memo?", tag="form")
        else:
            field("Date", date, "When was the letter written?", tag="free_text")
            greeting = f"Dear {person},"
            draw.text((mx, y), greeting, fill=ink, font=fonts.fit_font(name, greeting, w - 2 * mx, base))
            y += lh
            qas.append(QA("Who is the letter addressed to?", person, golds=(person, f"Dear {person}"),
                          tag="free_text"))
        y += lh // 2
        filler = rng.sample(LINE_PHRASES, 3)
        for sent in filler:
            s = sent.capitalize() + "."
            draw.text((mx, y), s, fill=ink, font=fonts.fit_font(name, s, w - 2 * mx, base))
            y += lh
        sig = f"Sincerely, {other}" if kind == "letter" else f"cc: {_person(rng)}"
        draw.text((mx, min(y + lh, h - lh - 2)), sig, fill=ink,
                  font=fonts.fit_font(name, sig, w - 2 * mx, base))
        if kind == "letter":
            qas.append(QA("Who signed the letter?", other, golds=(other,), tag="free_text"))
    rng.shuffle(qas)
    for qa in qas:
        if not qa.wrong:
            qa.wrong = _person(rng) if any(qa.answer == p for p in (person, other)) else None
        qa.short, qa.form = qa.answer, "short"     # every answer is a string printed on the page
    return Drawn(img, qas, {"kind": kind, "company": company})
