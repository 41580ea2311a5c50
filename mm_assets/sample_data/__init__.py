"""Generated Mammoth-format look-alike data with planted truth (no Dagster import here).

    from mm_assets.sample_data import generate_sample_data
    generate_sample_data("out/", scale="demo", seed=0)
"""

from .generate import generate_sample_data

__all__ = ["generate_sample_data"]
