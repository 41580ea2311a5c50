"""Stage `sources`: streaming ingest of Mammoth-layout data and eval exports."""
