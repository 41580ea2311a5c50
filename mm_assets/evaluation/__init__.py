"""Evaluation suite: reference-exact metrics (`metrics`) and per-benchmark task modules (`benchmarks`).

Plain Python; the Dagster assets that run checkpoints on the eval sets build on these.
"""
