"""Drawing families: one per generated source, grouped by domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import caption, chart, code_math, detection, diagram, general, language, ocr
from .base import Drawn


@dataclass(frozen=True)
class Family:
    key: str
    domain: str
    source: str
    directory: str | None    # image directory inside the tarballs; None for text-only rows
    fmt: str | None          # "JPEG", "PNG" or None
    draw: Callable[..., Drawn]
    id_style: str            # how this source writes its `id` (see plan.make_id)
    weight: float = 1.0      # share within its domain


FAMILIES: dict[str, Family] = {f.key: f for f in (
    Family("general_shapes", "general", "gen_general_shapes", "gen_general/shapes", "JPEG",
           general.draw_shapes, "numstr", 0.65),
    Family("general_tiles", "general", "gen_general_tiles", "gen_general/tiles", "PNG",
           general.draw_tiles, "prefixed", 0.35),
    Family("chart_bar", "chart", "gen_chart_bar", "gen_chart/bar", "JPEG", chart.draw_bar, "prefixed", 0.4),
    Family("chart_line", "chart", "gen_chart_line", "gen_chart/line", "PNG", chart.draw_line, "prefixed", 0.3),
    Family("chart_pie", "chart", "gen_chart_pie", "gen_chart/pie", "JPEG", chart.draw_pie, "numstr", 0.3),
    Family("ocr_words", "ocr", "gen_ocr_words", "gen_ocr/words", "JPEG", ocr.draw_words, "hex", 0.35),
    Family("ocr_lines", "ocr", "gen_ocr_lines", "gen_ocr/lines", "PNG", ocr.draw_lines, "numstr", 0.35),
    Family("ocr_docs", "ocr", "gen_ocr_docs", "gen_ocr/docs", "JPEG", ocr.draw_document, "prefixed", 0.3),
    Family("caption_scene", "caption", "gen_caption_scene", "gen_caption/scene", "JPEG",
           caption.draw_scene, "hex", 0.6),
    Family("caption_brief", "caption", "gen_caption_brief", "gen_caption/brief", "JPEG",
           caption.draw_brief, "prefixed", 0.4),
    Family("domain_cycle", "domain_specific", "gen_domain_diagram", "gen_domain/cycle", "JPEG",
           diagram.draw_cycle, "prefixed", 0.5),
    Family("domain_parts", "domain_specific", "gen_domain_parts", "gen_domain/parts", "PNG",
           diagram.draw_parts, "numstr", 0.5),
    Family("code_math_geometry", "code_math", "gen_code_math_geometry", "gen_code_math/geometry", "JPEG",
           code_math.draw_geometry, "prefixed", 0.4),
    Family("code_math_arith", "code_math", "gen_code_math_arith", "gen_code_math/arith", "PNG",
           code_math.draw_arith, "int", 0.35),
    Family("code_math_code", "code_math", "gen_code_math_code", "gen_code_math/code", "PNG",
           code_math.draw_code, "prefixed", 0.25),
    Family("language_word_problems", "language", "gen_language_word_problems", None, None,
           language.draw_word_problem, "int", 0.6),
    Family("language_text_tasks", "language", "gen_language_text_tasks", None, None,
           language.draw_text_task, "int", 0.4),
    Family("detection_count", "detection", "gen_detection_count", "gen_detection/count", "JPEG",
           detection.draw_count, "numstr", 0.55),
    Family("detection_points", "detection", "gen_detection_points", "gen_detection/points", "JPEG",
           detection.draw_points, "int", 0.45),
)}

DOMAINS = ("general", "chart", "ocr", "caption", "domain_specific", "code_math", "language", "detection")


def families_of(domain: str) -> list[Family]:
    return [f for f in FAMILIES.values() if f.domain == domain]


__all__ = ["DOMAINS", "FAMILIES", "Family", "Drawn", "families_of"]
