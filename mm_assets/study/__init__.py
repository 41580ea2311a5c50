"""The curation study's ablation report: paired bootstrap estimators and their plot (no Dagster)."""
