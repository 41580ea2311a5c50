"""The canaries resource: known-bad sample ids every filtering step is checked against."""

import dagster as dg
import polars as pl
from pydantic import Field


class CanariesResource(dg.ConfigurableResource):
    """`path`: a canary file (one sample_id per line, `#` comments; local or fsspec URI). Empty:
    on generated data the planted low-quality samples stand in (for the report only — no
    decision reads them); with neither, steps report no canary recall."""

    path: str = Field(default="", description="canary file; empty = planted truth when there is one")
    storage_options: dict = Field(default_factory=dict)

    def ids(self, samples: pl.DataFrame, planted_truth: str | None) -> tuple[list[str], str] | None:
        """(canary sample ids, where they came from), or None when there are none."""
        from mm_assets.canaries import canaries_from_truth, load_canaries
        from mm_assets.planted import load_truth

        if self.path:
            return list(load_canaries(self.path, samples["sample_id"], self.storage_options).ids), self.path
        truth = load_truth(planted_truth)
        return (canaries_from_truth(truth, samples), "planted truth (generated data)") if truth else None
