"""Everything the code location serves, on one screen."""

import dagster as dg

from jobs import JOBS
from mm_assets.sources.assets import eval_sets, quarantine, raw_shards, samples, source
from resources.json_io_manager import JsonPointerIOManager
from resources.settings import source_resource, storage_resource

_storage = storage_resource()

defs = dg.Definitions(
    assets=[source, raw_shards, samples, quarantine, eval_sets],
    jobs=JOBS,
    resources={
        "storage": _storage,
        "mammoth": source_resource(),
        "io_manager": JsonPointerIOManager(storage=_storage),
    },
)
