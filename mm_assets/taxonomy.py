"""The fixed vocabularies of the project: Mammoth domains and eval benchmarks."""

# The 8 single-image/text categories of MAmmoTH-VL-Instruct (the si_10M file).
DOMAINS = ("general", "chart", "ocr", "caption", "domain_specific", "code_math", "language", "detection")
TEXT_ONLY_DOMAINS = ("language",)

BENCHMARKS = ("countbench", "docvqa", "chartqa", "realworldqa", "pixmo_points")
# The training domain each benchmark draws on (for leakage checks and mining reports).
BENCHMARK_DOMAIN = {
    "countbench": "detection",
    "docvqa": "ocr",
    "chartqa": "chart",
    "realworldqa": "general",
    "pixmo_points": "detection",
}
