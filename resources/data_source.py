"""Where the Mammoth-layout source data and the eval exports live."""


import dagster as dg
from pydantic import Field

from mm_assets.sources.ingest import DEFAULT_SAMPLES_PER_SHARD
from mm_assets.sources.source_scan import SourceSpec
from mm_assets.storage import Storage


class SourceFiles(dg.Config):
    name: str = Field(description="Short unique name of this source")
    annotations: str = Field(description="Path or URI of the JSON array (e.g. mammoth_si_10M.json)")
    images: str = Field(default="", description="Directory (path or URI) holding the image tarballs")


class MammothSourceResource(dg.ConfigurableResource):
    """The inputs of the `source` and `eval_sets` assets.

    Real data: list the MAmmoTH-VL annotation file(s) with the directory of `single_image_data`
    tarballs, a source -> domain mapping file, and a directory of eval exports.
    """

    sources: list[SourceFiles]
    domain_map: str = Field(description="JSON object mapping each `source` name to one of the 8 domains")
    eval_dir: str = Field(description="Directory with <benchmark>.parquet exports in native fields")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for these inputs")
    samples_per_shard: int = Field(default=DEFAULT_SAMPLES_PER_SHARD, gt=0)
    planted_truth: str = Field(default="", description="Generated data only: the planted-truth file. "
                               "Quality reports read it; no decision does but the oracle's (the upper bound).")
    image_content: str = Field(default="", description="Generated data only: what each main-source image shows, "
                               "as question/answer pairs by image sha256 — what MM-GEN's `drawn` generator writes "
                               "from (a stand-in for a strong VLM). Names no planted defect.")
    trusted: SourceFiles | None = Field(default=None, description="A small clean pool in the same layout: "
                                        "what the default perplexity reference model is trained on")

    def specs(self) -> list[SourceSpec]:
        return [SourceSpec(s.name, s.annotations, s.images) for s in self.sources]

    def eval_storage(self) -> Storage:
        return Storage(self.eval_dir, self.storage_options)
