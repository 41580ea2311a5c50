"""Drawing primitives shared by the families: colours, canvas sizes, backgrounds, shapes."""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Named colours whose names are the answers to colour questions; kept far apart in RGB.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (212, 38, 38), "blue": (36, 84, 214), "green": (40, 150, 60),
    "yellow": (236, 206, 34), "orange": (244, 132, 28), "purple": (132, 58, 182),
    "pink": (238, 122, 184), "brown": (122, 76, 36), "gray": (128, 128, 128),
    "black": (22, 22, 22), "white": (246, 246, 246), "cyan": (34, 196, 214),
}
OBJECT_COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "gray",
                  "cyan", "black", "white")

SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "heart", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
           "diamond": "diamonds", "hexagon": "hexagons", "heart": "hearts", "cross": "crosses"}


@dataclass(frozen=True)
class Sizing:
    img_min: int
    img_max: int


@dataclass
class Obj:
    shape: str
    colour: str
    cx: float
    cy: float
    r: float
    rot: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 14) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def luminance(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def ink_for(bg: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    """A text colour that contrasts with `bg`."""
    if luminance(bg) > 140:
        return rng.choice([(15, 15, 15), (30, 30, 90), (90, 20, 20), (20, 70, 30), (50, 50, 50)])
    return rng.choice([(250, 250, 250), (255, 235, 120), (200, 240, 255), (235, 235, 235)])


def canvas_size(rng: random.Random, sizing: Sizing, aspect: tuple[float, float] = (0.62, 1.6),
                min_side: int | None = None) -> tuple[int, int]:
    """A non-square (width, height) with both sides inside the scale's range."""
    lo = max(sizing.img_min, min_side or 0)
    hi = max(lo + 8, sizing.img_max)
    for _ in range(20):
        w = rng.randint(lo, hi)
        h = int(round(w / rng.uniform(*aspect)))
        if lo <= h <= hi and abs(w - h) >= 8:
            return w, h
    return lo + 16, lo


def gradient_field(rng: random.Random, w: int, h: int) -> np.ndarray:
    """A [0, 1] field: linear at a random angle, radial, or two soft blobs."""
    x = (np.arange(w, dtype=np.float32) / max(w - 1, 1))[None, :]
    y = (np.arange(h, dtype=np.float32) / max(h - 1, 1))[:, None]
    kind = rng.random()
    if kind < 0.55:
        a = rng.uniform(0, 2 * math.pi)
        t = (x - 0.5) * math.cos(a) + (y - 0.5) * math.sin(a)
        t = t / 0.71 * 0.5 + 0.5
    elif kind < 0.8:
        cx, cy = rng.uniform(-0.2, 1.2), rng.uniform(-0.2, 1.2)
        t = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / 1.2
    else:
        t = np.zeros((h, w), dtype=np.float32)
        for _ in range(2):
            cx, cy, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.15, 0.45)
            t = t + np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
        t = t / max(float(t.max()), 1e-6)
    return np.clip(np.broadcast_to(t, (h, w)), 0.0, 1.0)


def background(rng: random.Random, w: int, h: int, tone: str = "light",
               noise: float | None = None) -> tuple[Image.Image, tuple[int, int, int]]:
    """A varied background (gradient, radial, blobs) and its mean colour."""
    if tone == "light":
        c1 = tuple(rng.randint(170, 252) for _ in range(3))
    elif tone == "dark":
        c1 = tuple(rng.randint(10, 90) for _ in range(3))
    else:
        c1 = tuple(rng.randint(10, 252) for _ in range(3))
    spread = rng.randint(25, 80)
    c2 = tuple(max(0, min(255, c + rng.randint(-spread, spread))) for c in c1)
    t = gradient_field(rng, w, h)[..., None]
    arr = np.asarray(c1, np.float32) * (1 - t) + np.asarray(c2, np.float32) * t
    if noise is None:
        noise = rng.choice([0.0, 0.0, 3.0, 6.0])
    if noise:
        nrng = np.random.default_rng(rng.getrandbits(64))
        arr = arr + nrng.normal(0.0, noise, size=(h, w, 1)).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    mean = tuple(int(v) for v in arr.reshape(-1, 3).mean(axis=0))
    return img, mean  # type: ignore[return-value]


def paper(rng: random.Random, w: int, h: int) -> Image.Image:
    """A page with uneven, scan-like illumination."""
    base = rng.choice([(252, 252, 250), (250, 247, 236), (244, 244, 244), (248, 250, 255)])
    shade = rng.randint(12, 40)
    t = gradient_field(rng, w, h)[..., None]
    arr = np.asarray(base, np.float32) - shade * t
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def lighting(img: Image.Image, rng: random.Random, strength: tuple[int, int] = (10, 35)) -> Image.Image:
    """Darken the image along a random gradient (keeps near-identical layouts apart)."""
    w, h = img.size
    t = gradient_field(rng, w, h)[..., None]
    arr = np.asarray(img, np.float32) * (1 - rng.randint(*strength) / 255.0 * t)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def shape_points(shape: str, cx: float, cy: float, r: float, rot: float = 0.0) -> list[tuple[float, float]]:
    def poly(n: int, radius: float, offset: float) -> list[tuple[float, float]]:
        return [(cx + radius * math.cos(offset + rot + 2 * math.pi * k / n),
                 cy + radius * math.sin(offset + rot + 2 * math.pi * k / n)) for k in range(n)]

    if shape == "square":
        return poly(4, r * 1.05, math.pi / 4)
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)]
    if shape == "triangle":
        # centroid at (cx, cy) so the centre point lies inside the shape
        return poly(3, r, -math.pi / 2)
    if shape == "hexagon":
        return poly(6, r, 0.0)
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + rot + math.pi * k / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    if shape == "heart":
        pts = []
        for k in range(32):
            t = 2 * math.pi * k / 32
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((cx + x * r / 17, cy - y * r / 17 - r * 0.1))
        return pts
    if shape == "cross":
        a, b = r, r * 0.36
        return [(cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b),
                (cx + a, cy + b), (cx + b, cy + b), (cx + b, cy + a), (cx - b, cy + a),
                (cx - b, cy + b), (cx - a, cy + b), (cx - a, cy - b), (cx - b, cy - b)]
    raise ValueError(shape)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
               fill, outline=None, width: int = 2, rot: float = 0.0) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=outline, width=width)
    else:
        draw.polygon(shape_points(shape, cx, cy, r, rot), fill=fill, outline=outline, width=width)


def shape_mask(obj: Obj, w: int, h: int) -> np.ndarray:
    """Boolean H x W mask of one object."""
    m = Image.new("L", (w, h), 0)
    draw_shape(ImageDraw.Draw(m), obj.shape, obj.cx, obj.cy, obj.r, fill=255, outline=255,
               width=1, rot=obj.rot)
    return np.asarray(m) > 0


def place(rng: random.Random, w: int, h: int, n: int, r_range: tuple[float, float],
          margin: float = 0.06, gap: float = 4.0, tries: int = 400) -> list[tuple[float, float, float]]:
    """Up to `n` non-overlapping discs (cx, cy, r) inside the canvas margins."""
    out: list[tuple[float, float, float]] = []
    lo, hi = r_range
    mx, my = w * margin, h * margin
    for attempt in range(tries):
        if len(out) == n:
            break
        r = rng.uniform(lo, hi)
        if 2 * (r + mx) >= w or 2 * (r + my) >= h:
            hi = max(lo * 0.6, hi * 0.9)
            lo = min(lo, hi)
            continue
        cx = rng.uniform(mx + r, w - mx - r)
        cy = rng.uniform(my + r, h - my - r)
        if all(math.hypot(cx - x, cy - y) > r + rr + gap for x, y, rr in out):
            out.append((cx, cy, r))
        elif attempt % 40 == 39:   # crowded: shrink the discs a little
            hi = max(lo, hi * 0.92)
    return out


def encode(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    elif fmt == "PNG":
        img.save(buf, "PNG", compress_level=6)
    else:
        raise ValueError(fmt)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


EXT = {"JPEG": "jpg", "PNG": "png"}
