"""The `semdedup` recipe step: thresholds on the stored SemDeDup scores (no Dagster).

`semdedup_scores[space]` (k-means + pairwise, once per embedding version and clustering
setting) is the expensive part; a recipe's decisions only pick the threshold for its target
removal fraction (or eps) in each embedding space.
"""

from __future__ import annotations

import io
import json
from typing import Annotated, Literal

import polars as pl
from pydantic import Field, field_validator, model_validator

from mm_assets.curation_step import CurationStep, Decided, Markdown, PngImage, Section, StepInputs
from mm_assets.recipes.params import Fraction, StepParams


class SemDedupParams(StepParams):
    target_removal: Fraction | None = None
    eps: Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)] | None = None
    clusters: Literal["auto"] | int = "auto"
    keep: Literal["hardest", "easiest", "random"] = "hardest"

    @field_validator("clusters", mode="before")
    @classmethod
    def _clusters(cls, v):
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"must be 'auto' or an integer ≥ 1 (got {v!r})")

    @model_validator(mode="after")
    def _one_threshold(self):
        if (self.target_removal is None) == (self.eps is None):
            raise ValueError("give exactly one of target_removal and eps")
        return self

    def clustering(self) -> dict:
        return {"clusters": self.clusters, "keep": self.keep}

    def threshold(self) -> dict:
        return {"target_removal": self.target_removal, "eps": self.eps}


def clustering_key(clustering: dict) -> str:
    return f"clusters={clustering['clusters']},keep={clustering['keep']}"


def _decide_space(scores: pl.DataFrame, step: SemDedupParams, groups) -> tuple[pl.DataFrame, dict]:
    from mm_assets.dedup.pipeline import decide

    if groups is not None:
        in_space = set(scores["sample_id"].to_list())
        groups = [g for g in groups if sum(s in in_space for s in g) >= 2]
    mask, report = decide(scores, step.target_removal, step.eps, planted_groups=groups)
    if groups is not None:
        in_space = set(scores["sample_id"].to_list())
        removable = sum(max(0, sum(s in in_space for s in g) - 1) for g in groups)
        _, at_rate = decide(scores, target_removal=removable / scores.height, planted_groups=groups)
        report["at_planted_rate"] = {"target_removal": removable / scores.height, "eps": at_rate["eps"],
                                     **at_rate["vs_planted"]}
    threshold = report["threshold"]
    decisions = mask.select(
        "sample_id", "domain", pl.col("score").cast(pl.Float64),
        pl.when(pl.col("kept")).then(pl.lit("keep")).otherwise(pl.lit("drop")).alias("decision"),
        pl.when(pl.col("kept"))
        .then(pl.format("max similarity to an earlier cluster member ≤ {}", pl.lit(f"{threshold:.6f}")))
        .otherwise(pl.format("near-duplicate: similarity {} > {} to kept-or-earlier member",
                             pl.col("score").round(6), pl.lit(f"{threshold:.6f}"))).alias("reason"),
        pl.col("duplicate_of").alias("related_id"))
    return decisions, report


def decide(inputs: StepInputs) -> Decided:
    """Per embedding space: the threshold for the recipe's target (or its eps) on the stored
    scores, with achieved vs target, eps, removal per domain and precision/recall against the
    planted duplicate groups when there are some."""
    from mm_assets.dedup.pipeline import planted_groups
    from mm_assets.dedup.report import plot_removal_vs_eps

    step = inputs.params
    setting = clustering_key(step.clustering())
    groups = planted_groups(inputs.truth, inputs.pool) if inputs.truth is not None else None
    parts, reports, metadata, pngs = {}, {}, {"kmeans_or_pairwise_work": False}, {}
    for space, pointer in sorted(inputs.pointers("semdedup_scores").items()):
        stored = pointer["settings"].get(setting)
        if stored is None:
            raise ValueError(f"semdedup_scores[{space}] holds no scores for {setting} (recipe {inputs.recipe}); "
                             "re-materialize semdedup_scores so it reads the current recipes")
        scores = inputs.storage.read_parquet(f"{stored['root']}/scores.parquet")
        parts[space], report = _decide_space(scores, step, groups)
        reports[space] = report
        plot = io.BytesIO()
        plot_removal_vs_eps(scores["score"].to_numpy(), plot, target=step.target_removal, chosen_eps=report["eps"])
        pngs[f"removal_vs_eps_{space}.png"] = plot.getvalue()
        if report["semantic_pruning_warning"]:
            inputs.log(f"WARNING {inputs.recipe}/{space}: eps {report['eps']:.3f} > 0.15 — this removes "
                       "semantically similar samples, not duplicates")
        removed = (parts[space].filter(pl.col("decision") == "drop")
                   .select("sample_id", "domain", "score", "related_id").head(10))
        metadata.update({
            f"{space}/n": report["n"], f"{space}/removed": report["removed"],
            f"{space}/achieved_removal": report["achieved_removal"],
            f"{space}/target_removal": step.target_removal, f"{space}/target_count": report["target_count"],
            f"{space}/eps": report["eps"], f"{space}/exact": report["exact"],
            f"{space}/semantic_pruning_warning": report["semantic_pruning_warning"],
            f"{space}/removal_per_domain": report["removal_per_domain"],
            f"{space}/removed_and_kept_representative": removed,
            f"{space}/removal_vs_eps": PngImage(pngs[f"removal_vs_eps_{space}.png"], "removal vs eps"),
        })
        if "vs_planted" in report:
            metadata[f"{space}/precision_vs_planted"] = report["vs_planted"]["precision"]
            metadata[f"{space}/recall_vs_planted"] = report["vs_planted"]["recall"]
            metadata[f"{space}/at_planted_rate"] = report["at_planted_rate"]
    report_json = json.dumps({"params": step.model_dump(mode="json"), "setting": setting, "spaces": reports},
                             default=str, sort_keys=True).encode()
    metadata["setting"] = Markdown(f"`{setting}`")
    return Decided(pl.concat(list(parts.values())).sort("sample_id"), metadata=metadata,
                   reports={"report.json": report_json, **pngs})


STEP = CurationStep(
    kind="semdedup", params=SemDedupParams,
    sections=(Section("semdedup_clustering", "SemDeDup clustering parameters (clusters, keep order): read by "
                      "semdedup_scores", SemDedupParams.clustering),
              Section("semdedup_threshold", "SemDeDup threshold (target removal fraction or eps): read by "
                      "semdedup_mask", SemDedupParams.threshold)),
    decided_by=("semdedup_threshold", "semdedup_clustering"),
    reads=("semdedup_scores", "samples"),
    decide=decide,
    score_assets=("semdedup_scores",), assets_module="mm_assets.dedup.assets",
    decisions_asset="semdedup_mask", group="dedup", code_version="3",
    description="A recipe's SemDeDup decisions: a threshold on the stored scores for its target removal fraction "
                "(or eps) in each embedding space — no k-means, no pairwise work. Reports achieved vs target, eps, "
                "removal per domain, kept representatives.",
)
