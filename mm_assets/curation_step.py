"""What a curation step is: one record per step, read by everything that used to list steps.

A step module declares one `CurationStep`: the recipe key and its parameter model, the recipe
sections it reads (each hashed on its own, so an edit invalidates only what reads it), the
recipe-independent score assets it needs computed once (in dependency order), the stored
assets its decisions read, and a plain `decide(inputs) -> Decided` function. The registry
(`mm_assets.steps`) lists the records; the recipe schema, the section assets, the decisions
assets, the jobs, the automation target, the in-process runner and `curated_dataset`'s inputs
are all derived from it. No Dagster import here: `decide` can be called from a notebook with a
`StepInputs` built by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import polars as pl

from mm_assets.recipes.params import StepParams, step_params_hash
from mm_assets.shard_map import RayPlacement
from mm_assets.storage import Storage


@dataclass(frozen=True)
class Section:
    """A part of a step's parameters with its own hash (`recipe/<name>[recipe]`)."""
    name: str
    doc: str                                  # what it holds and who reads it
    value: Callable[[Any], Any]               # step parameters -> the JSON-able section value


@dataclass(frozen=True)
class PngImage:
    """A plot for the UI: shown inline in the decisions' metadata."""
    data: bytes
    title: str = ""


@dataclass(frozen=True)
class Markdown:
    text: str


@dataclass
class Decided:
    """What `decide` returns. `decisions` has `STEP_DECISION_COLUMNS` for every sample of the
    pool; `files` are written next to it and read downstream (part of the data version);
    `reports` are written next to it for people (not part of the data version); `metadata`
    values may be numbers, strings, dicts/lists (JSON), DataFrames (tables), `Markdown` or
    `PngImage`."""
    decisions: pl.DataFrame
    metadata: dict = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    reports: dict[str, bytes] = field(default_factory=dict)
    params_hash: str | None = None            # default: the hash of the step's parameters
    canaries: bool = True                     # report recall and lift on the canaries


@dataclass
class StepInputs:
    """Everything a step's `decide` reads, without Dagster: the recipe's parameters of the
    step, the artifact storage, and the stored pointers of the assets the step `reads`."""
    recipe: str
    params: StepParams
    storage: Storage
    pointers: Callable[[str], dict]           # asset name -> {partition: pointer} or pointer
    planted_truth: str | None = None          # generated data's truth file: reports only, except the oracle's decisions
    canary_ids: Callable[[pl.DataFrame], tuple[list[str], str] | None] = lambda pool: None
    log: Callable[[str], None] = print
    ray: RayPlacement | None = None           # a Ray cluster for steps that map work over it (rephrase generation)
    checkpoints: Storage | None = None        # the checkpoint store, for steps that run a model from it (mmgen)
    image_content: str | None = None          # generated data's image content (mmgen's `drawn` generator)

    @cached_property
    def pool(self) -> pl.DataFrame:
        """Every domain's samples table as one table (the pool every step decides on)."""
        samples = self.pointers("samples")
        return pl.concat([self.storage.read_parquet(samples[d]["root"]) for d in sorted(samples)],
                         how="diagonal_relaxed")

    @cached_property
    def canaries(self) -> tuple[list[str], str] | None:
        """(known-bad sample ids, where they came from), or None: for recall and lift reports."""
        return self.canary_ids(self.pool)

    @cached_property
    def truth(self) -> dict | None:
        from mm_assets.planted import load_truth
        return load_truth(self.planted_truth)


@dataclass(frozen=True)
class CurationStep:
    kind: str                                  # the recipe key (`- perplexity: {...}`)
    params: type[StepParams]
    sections: tuple[Section, ...]              # every section of the step's parameters
    decided_by: tuple[str, ...]                # the sections its decisions asset reads
    reads: tuple[str, ...]                     # assets whose stored pointers `decide` reads (all partitions)
    decide: Callable[[StepInputs], Decided]
    description: str
    score_assets: tuple[str, ...] = ()         # recipe-independent assets it needs, parents first
    assets_module: str | None = None           # where the Dagster definitions of `score_assets` live
    decisions_asset: str = ""                  # default `<kind>_decisions`
    group: str = "curation_steps"
    code_version: str = "1"
    reads_planted_truth: bool = False          # its decisions read the planted truth: an oracle, not a curation method
    # reads that a fill materializes only when some recipe uses the step: while they are missing,
    # automation still settles the step's decisions of recipes without it ("not in recipe")
    optional_reads: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.decisions_asset:
            object.__setattr__(self, "decisions_asset", f"{self.kind}_decisions")
        unknown = set(self.decided_by) - {s.name for s in self.sections}
        if unknown:
            raise ValueError(f"step {self.kind}: decided_by names unknown sections {sorted(unknown)}")
        if set(self.optional_reads) - set(self.reads):
            raise ValueError(f"step {self.kind}: optional_reads must be among its reads")
        if self.score_assets and not self.assets_module:
            raise ValueError(f"step {self.kind}: score assets {self.score_assets} need an assets_module")

    def params_hash(self, params: StepParams) -> str:
        return step_params_hash(self.kind, params)
