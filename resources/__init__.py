"""Dagster ConfigurableResources: storage, data sources (later: models, backends, tracking)."""
