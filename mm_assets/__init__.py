"""mm-curation: a Dagster asset graph that curates multimodal instruction data."""

import warnings as _warnings

# Dagster APIs this project uses on purpose although Dagster marks them beta: the observable
# sources, the per-dimension partition mappings, per-partition data versions and the `data_version`
# every asset returns. Each use would print a BetaWarning (dozens per run, in every process);
# other beta and deprecation warnings still show.
_warnings.filterwarnings(
    "ignore", message=r"(Function|Class|Parameter) `(observable_source_asset|MultiToSingleDimensionPartitionMapping"
                      r"|DataVersionsByPartition|data_version)`.* is currently in beta")
