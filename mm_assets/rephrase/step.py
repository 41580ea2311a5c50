"""The `rephrase` recipe step over the whole pool (no Dagster).

Generation is the expensive part and is cached by (text hash, model, prompt version) in one
store shared by every recipe (`rephrase_cache/`), one chunk per completed batch: a run killed
midway resumes where it stopped, and a recipe that selects samples another recipe already
rephrased generates nothing. Every output is validated; a rejected rewrite keeps the original
and its reason goes into the decisions (and the ledger).
"""

from __future__ import annotations

import json
import time
from typing import Literal

from pydantic import model_validator

from mm_assets.curation_step import CurationStep, Decided, Section, StepInputs
from mm_assets.recipes.params import FractionOrAll, StepParams, check_model_for_backend

CACHE_ROOT = "rephrase_cache"


class RephraseParams(StepParams):
    """`backend`: `template` (rule-based paraphrase of questions, offline and deterministic — not
    a language model), `hf` (any local causal LM at `model`) or `vllm` (the `gpu` extra)."""
    fraction: FractionOrAll
    style: Literal["paraphrase", "concise", "detailed"] = "paraphrase"
    backend: Literal["template", "hf", "vllm"] = "template"
    model: str | None = None
    salt: str = "rephrase"

    @model_validator(mode="after")
    def _model_for_backend(self):
        check_model_for_backend(self.backend, self.model)
        if self.backend == "template" and self.style != "paraphrase":
            raise ValueError(f"the template backend only paraphrases questions (style {self.style!r} needs hf or vllm)")
        return self


def _records(st, raw_shards: dict):
    from mm_assets.embeddings.inference import iter_raw_samples

    for domain, sid, meta, _ in iter_raw_samples(st, raw_shards):
        yield domain, sid, meta


def decide(inputs: StepInputs) -> Decided:
    import polars as pl

    from mm_assets.metadata import content_digest
    from mm_assets.rephrase import (load_rephraser, rephrase_decisions, rephrase_samples, rewrites_by_sample,
                                    rewritten_record, select_for_rephrase)
    from mm_assets.storage import parquet_bytes

    step, st = inputs.params, inputs.storage
    started = time.perf_counter()
    backend = load_rephraser(step.backend, step.style, step.model)
    params_hash = content_digest([STEP.params_hash(step), backend.model_id, backend.prompt_version])[:12]
    records = list(_records(st, inputs.pointers("raw_shards")))
    by_domain: dict[str, list[str]] = {}
    for domain, sid, _ in records:
        by_domain.setdefault(domain, []).append(sid)
    selected = set().union(*(select_for_rephrase(ids, step.fraction, step.salt) for ids in by_domain.values()))
    chosen = {sid: meta for _, sid, meta in records if sid in selected}
    from mm_assets.rephrase.by_batch import RephraserSpec

    remote = None if inputs.ray is None else (RephraserSpec(step.backend, step.style, step.model), inputs.ray)
    results, stats = rephrase_samples(list(chosen.items()), backend, st.child(CACHE_ROOT), remote=remote,
                                      on_batch=lambda done, total: inputs.log(f"rephrased {done}/{total}"))
    decisions = pl.concat([
        rephrase_decisions(ids, results.filter(pl.col("sample_id").is_in(ids)), fraction=step.fraction,
                           salt=step.salt, domain=domain, params_hash=params_hash)
        for domain, ids in sorted(by_domain.items())])
    rewrites = {sid: json.dumps(rewritten_record(chosen[sid], turns), ensure_ascii=False, sort_keys=True)
                for sid, turns in rewrites_by_sample(results).items()}
    rewrites_table = pl.DataFrame({"sample_id": list(rewrites), "json": list(rewrites.values())},
                                  schema={"sample_id": pl.String, "json": pl.String}).sort("sample_id")
    rejected = stats["rejected"]
    inputs.log(f"{inputs.recipe}: {stats['samples']} samples selected, {stats['generated']} texts generated, "
               f"{stats['from_cache']} from the cache, {sum(rejected.values())} rewrites rejected {rejected}")
    return Decided(
        decisions, params_hash=params_hash, canaries=False,
        files={"rewrites.parquet": parquet_bytes(rewrites_table), "results.parquet": parquet_bytes(results)},
        metadata={"backend": backend.name, "model_id": backend.model_id, "prompt_version": backend.prompt_version,
                  "selected": stats["samples"], "turns": stats["turns"], "generated": stats["generated"],
                  "from_cache": stats["from_cache"], "rewritten_samples": len(rewrites),
                  "rejected": sum(rejected.values()), "rejected_by_reason": rejected,
                  "skipped_by_reason": stats["skipped"], "generation_seconds": time.perf_counter() - started,
                  "generated_on": "Ray" if remote else "in process"})


STEP = CurationStep(
    kind="rephrase", params=RephraseParams,
    sections=(Section("rephrase", "rephrasing step parameters: read by rephrase_decisions",
                      lambda p: p.model_dump(mode="json")),),
    decided_by=("rephrase",),
    reads=("raw_shards",),
    decide=decide,
    description="Rephrased text of a recipe's selected samples (template, HF or vLLM back end), cached by (text hash, "
                "model, prompt version) and resumable; every rewrite validated (answers, numbers, <image> kept) — "
                "rejected ones keep the original, with the reason in the ledger.",
)
