"""mm-curation: a Dagster asset graph that curates multimodal instruction data."""
