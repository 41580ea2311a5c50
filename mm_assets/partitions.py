"""Partitions shared by the asset graph."""

import dagster as dg

from mm_assets.taxonomy import BENCHMARKS, DOMAINS, TEXT_ONLY_DOMAINS

domain_partitions = dg.StaticPartitionsDefinition(list(DOMAINS))
benchmark_partitions = dg.StaticPartitionsDefinition(list(BENCHMARKS))

# Embedding spaces: image embeddings of all image domains are deduplicated together (a
# duplicate across domains is a duplicate); text-only rows live in a separate text space.
SPACES = ("image", "text")
space_partitions = dg.StaticPartitionsDefinition(list(SPACES))
domain_to_space = dg.StaticPartitionMapping(
    {d: ("text" if d in TEXT_ONLY_DOMAINS else "image") for d in DOMAINS})

# One partition per recipe file, added by the recipe sensor when a file appears (and kept when
# it disappears: curated versions made from it stay readable and traceable).
recipe_partitions = dg.DynamicPartitionsDefinition(name="recipe")
recipe_domain_partitions = dg.MultiPartitionsDefinition({"recipe": recipe_partitions, "domain": domain_partitions})

# One partition per complete checkpoint, added by the checkpoint sensor (or by hand).
checkpoint_partitions = dg.DynamicPartitionsDefinition(name="checkpoint")
checkpoint_benchmark_partitions = dg.MultiPartitionsDefinition(
    {"checkpoint": checkpoint_partitions, "benchmark": benchmark_partitions})

# One partition per data mixture trained for real (`mixture_run`), named by its domains joined
# with "+" in sorted order, e.g. "chart+ocr"; added by `mm-curation mixtures` (or by hand).
mixture_partitions = dg.DynamicPartitionsDefinition(name="mixture")
