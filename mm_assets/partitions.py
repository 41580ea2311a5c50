"""Partitions shared by the asset graph."""

import dagster as dg

from mm_assets.taxonomy import BENCHMARKS, DOMAINS

domain_partitions = dg.StaticPartitionsDefinition(list(DOMAINS))
benchmark_partitions = dg.StaticPartitionsDefinition(list(BENCHMARKS))
