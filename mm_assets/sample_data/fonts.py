"""Fonts shipped with matplotlib (pip-installed everywhere), never system fonts."""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import matplotlib
from PIL import ImageFont

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"

# Latin fonts with full ASCII + Latin-1 coverage (the Computer Modern files use TeX encodings).
TEXT_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
)
PLAIN_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "STIXGeneral.ttf", "DejaVuSansMono.ttf")
BOLD_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "STIXGeneralBol.ttf")
MONO_FONTS = ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf")


@lru_cache(maxsize=1024)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), max(6, int(size)))


def pick(rng: random.Random, size: int, names: tuple[str, ...] = TEXT_FONTS) -> ImageFont.FreeTypeFont:
    return font(rng.choice(names), size)


def fit_font(name: str, text: str, max_width: float, size: int, min_size: int = 7) -> ImageFont.FreeTypeFont:
    """The largest font of `name` not above `size` whose rendering of `text` fits `max_width`."""
    while size > min_size and font(name, size).getlength(text) > max_width:
        size -= 1
    return font(name, size)
