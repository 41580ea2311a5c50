"""The source -> domain mapping: real MAmmoTH-VL source names and the generated ones."""

from __future__ import annotations

from .families import FAMILIES

# Real MAmmoTH-VL single-image/text sources per domain, written in lower_snake_case, from the
# paper's category -> source table (notes/mammoth-and-peers.md 1.2) plus the `source` strings
# seen in downstream loaders of mammoth_si_10M.json (1.4).
REAL_SOURCES: dict[str, tuple[str, ...]] = {
    "general": ("allava", "allava_zh", "svit_core", "sharegpt4v", "lvis_instruct4v",
                "wildvision_chat", "gqa", "sherlock", "cambrian_filtered", "visual7w", "idk",
                "laion_gpt4v"),
    "chart": ("mplug_docowl_chart", "ureader_chart", "ureader_qa", "ureader_kg", "dvqa",
              "arxiv_chart_gpt4o", "plotqa", "arxivqa", "infographicvqa", "robut_wtq", "robut_sqa",
              "robut_wikisql", "hitab", "tat_qa", "finqa", "vistext", "chartqa", "chart2text",
              "tinychart"),
    "ocr": ("multiui", "ocr_vqa", "screenqa", "textvqa", "textocr", "llavar_gpt4", "rects",
            "chrome_writing", "iam", "ureader_ocr", "st_vqa", "docvqa", "rendered_text", "visualmrc",
            "ocr_junpeng"),
    "caption": ("sharegpt4v_coco", "sharegpt4v_sam", "sharegpt4v_llava", "sharegpt4o",
                "infographic_caption"),
    "domain_specific": ("wit", "m3it_flan", "scienceqa", "vision_flan", "pathvqa", "tqa",
                        "a_okvqa", "websight", "viquae", "sharegpt4v_knowledge", "ai2d_4v"),
    "code_math": ("mavis_geo", "mavis_metagen", "geometry3k", "geomverse", "super_clevr", "tabmwp",
                  "geo170k", "mathvision", "geos", "geoqa_plus", "iconqa_math", "pmc_vqa", "unigeo",
                  "clevr_math", "mapqa", "raven", "design2code"),
    "language": ("orca", "orca_math", "numinamath", "mathinstruct", "magpie_pro_l3_mt",
                 "magpie_pro_l3_st"),
    "detection": ("clevr", "visual_genome", "tallyqa", "vsr"),
}


def source_to_domain() -> dict[str, str]:
    mapping = {src: domain for domain, srcs in REAL_SOURCES.items() for src in srcs}
    mapping.update({f.source: f.domain for f in FAMILIES.values()})
    return dict(sorted(mapping.items()))
