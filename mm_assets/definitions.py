"""Everything the code location serves, on one screen."""

import dagster as dg

from jobs import JOBS
from mm_assets.dedup.assets import semdedup_mask, semdedup_scores
from mm_assets.embeddings.assets import embedder, embeddings
from mm_assets.sources.assets import eval_sets, quarantine, raw_shards, samples, source
from resources.json_io_manager import JsonPointerIOManager
from resources.settings import embedder_resource, source_resource, storage_resource

_storage = storage_resource()

defs = dg.Definitions(
    assets=[
        source, raw_shards, samples, quarantine, eval_sets,   # sources
        embedder, embeddings,                                 # embeddings
        semdedup_scores, semdedup_mask,                       # dedup
    ],
    jobs=JOBS,
    resources={
        "storage": _storage,
        "mammoth": source_resource(),
        "embedder_model": embedder_resource(),
        "io_manager": JsonPointerIOManager(storage=_storage),
    },
)
