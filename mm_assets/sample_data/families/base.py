"""What a drawing family returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from ..conversations import QA


@dataclass
class Drawn:
    image: Image.Image | None     # None for text-only rows
    qas: list[QA]                 # first ones are used, in order, as conversation turns
    spec: dict = field(default_factory=dict)   # what was drawn; answers derive from it
