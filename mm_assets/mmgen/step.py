"""The `mmgen` recipe step: targeted synthesis of training samples for the target benchmarks'
subgroups (MM-GEN), over the whole pool (no Dagster).

Generation is the expensive part and is cached (`mmgen_cache/`) by (image hash, subgroup,
request, model, prompt version), one chunk per completed batch, in one store shared by every
recipe: a run killed midway resumes with the rest, and a recipe with the same targets generates
nothing. The decisions keep every pool sample (a candidate's reason says what was generated from
its image); the generated samples travel in `generated.parquet` with their subgroup, source
sample, reference item and filter decisions, and `curated_dataset` adds those that passed every
filter, next to their source, when the source itself is in the curated dataset.
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from mm_assets.curation_step import CurationStep, Decided, Section, StepInputs
from mm_assets.perplexity.step import REFERENCE_MODEL   # `score_with: tiny`: the reference model ranks the subgroups
from mm_assets.recipes.params import StepParams, check_model_for_backend
from mm_assets.taxonomy import BENCHMARKS

CACHE_ROOT = "mmgen_cache"
DEDUP_EPS = 0.02          # generations of one subgroup whose image and text cosines average above 0.98 are near duplicates


class TargetParams(StepParams):
    """`subgroups`: every subgroup of the benchmark's reference split (`auto`) or the ones named;
    `weakest: k`: of those, the k on which the step's `score_with` checkpoint scores lowest on
    the reference split (never the scored split: choosing targets by their scored-split results
    would let regression to the mean pass for a targeted gain)."""
    subgroups: Literal["auto"] | list[str] = "auto"
    per_subgroup: Annotated[int, Field(ge=1, le=100_000)]
    weakest: Annotated[int, Field(ge=1)] | None = None


class FilterParams(StepParams):
    perplexity: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 1.0   # keep fraction per subgroup
    dedup: bool = True


class MmgenParams(StepParams):
    """`generator`: `template` (re-targets the candidate record's own question/answer pairs into
    the benchmark's format — not a VLM), `drawn` (writes from what the look-alike generator drew
    in the image — generated data only, not a VLM), `hf` or `vllm` (a local VLM checkpoint at
    `model`)."""
    targets: dict[str, TargetParams]
    generator: Literal["template", "drawn", "hf", "vllm"] = "template"
    model: str | None = None
    filter: FilterParams = FilterParams()
    exclude_similarity: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.99   # as v1's decontamination
    score_with: str | None = None        # `tiny` (the reference model) or a checkpoint in the store: scores the
    #                                      reference split for `weakest`

    @field_validator("targets")
    @classmethod
    def _benchmarks(cls, v):
        unknown = sorted(set(v) - set(BENCHMARKS))
        if unknown or not v:
            raise ValueError(f"targets must name benchmarks; unknown: {unknown}; known: {list(BENCHMARKS)}")
        return v

    @model_validator(mode="after")
    def _model_for_generator(self):
        check_model_for_backend(self.generator, self.model, "generator")
        weakest = sorted(b for b, t in self.targets.items() if t.weakest is not None)
        if weakest and not self.score_with:
            raise ValueError(f"`weakest` ({', '.join(weakest)}) needs `score_with`: `tiny` (the reference "
                             "model) or the checkpoint whose reference-split scores rank the subgroups")
        return self


def _targets(step: MmgenParams, subgroups, weakest_of=None) -> list[tuple[str, int]]:
    """(subgroup, per_subgroup) for every targeted subgroup; an unknown name is an error.
    `weakest_of(benchmark, names, k)` picks a target's `weakest` k among its names."""
    out = []
    for bench, target in sorted(step.targets.items()):
        known = subgroups.filter(subgroups["benchmark"] == bench)["subgroup"].to_list()
        if not known:
            raise ValueError(f"mmgen targets {bench}, but its reference split is empty: add "
                             f"<eval dir>/reference/{bench}.parquet")
        names = known if target.subgroups == "auto" else [n if "/" in n else f"{bench}/{n}" for n in target.subgroups]
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"mmgen: unknown {bench} subgroup(s) {unknown}; the reference split has {known}")
        if target.weakest is not None:
            names = weakest_of(bench, names, target.weakest)
        out += [(n, target.per_subgroup) for n in names]
    return out


def _sources(st, raw_shards: dict, wanted: set[str]) -> dict[str, tuple[dict, bytes | None]]:
    """The training record and image bytes of each wanted sample (one pass over the raw shards)."""
    from mm_assets.embeddings.inference import iter_raw_samples

    out = {}
    for _, sid, meta, fields in iter_raw_samples(st, raw_shards):
        if sid in wanted:
            image = meta.get("image")
            out[sid] = (meta, fields.get(image["ext"]) if image else None)
    return out


def decide(inputs: StepInputs) -> Decided:
    import polars as pl

    from mm_assets.metadata import content_digest
    from mm_assets.mmgen.filters import duplicates_within_groups, perplexity_outliers, sample_vectors
    from mm_assets.mmgen.generate import GenRequest, answer_forms, generate_all, load_generator
    from mm_assets.mmgen.subgroups import pick_candidates
    from mm_assets.storage import parquet_bytes

    step, st = inputs.params, inputs.storage
    started = time.perf_counter()
    try:
        ref = inputs.pointers("mmgen_reference")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"recipe {inputs.recipe} uses mmgen, but its reference subgroups are not computed: "
                                "materialize reference_sets (every benchmark) and mmgen_reference "
                                "(reference_sets_job, mmgen_reference_job)") from exc
    items = st.read_parquet(f"{ref['root']}/reference_items.parquet")
    subgroups = st.read_parquet(f"{ref['root']}/subgroups.parquet")
    neighbours = st.read_parquet(f"{ref['root']}/neighbours.parquet")
    reference_scores: list[dict] = []

    def weakest_of(bench: str, names: list[str], k: int) -> list[str]:
        by_subgroup = _reference_scores(inputs, step.score_with, bench, items)
        reference_scores.extend({"benchmark": bench, "subgroup": s, "score": v} for s, v in sorted(by_subgroup.items()))
        return sorted(names, key=lambda n: (by_subgroup.get(n, float("inf")), n))[:k]

    targets = _targets(step, subgroups, weakest_of)

    # a source image must not be (nearly) a scored eval image: decontamination must still pass
    pool = inputs.pool
    near = st.read_parquet(f"{inputs.pointers('eval_neighbours')['root']}/nearest_eval_item.parquet")
    eval_sha = set()
    for ptr in inputs.pointers("eval_sets").values():
        eval_sha |= set(st.read_parquet(ptr["root"])["image_sha256"].drop_nulls().to_list())
    excluded = set(near.filter(pl.col("similarity") >= step.exclude_similarity)["sample_id"].to_list()) | set(
        pool.filter(pl.col("image_sha256").is_in(list(eval_sha)))["sample_id"].to_list())

    cands = pick_candidates(neighbours, items, dict(targets), excluded)
    sources = _sources(st, inputs.pointers("raw_shards"), set(cands["sample_id"].to_list()))
    described = {r["subgroup"]: r for r in subgroups.iter_rows(named=True)}
    forms = {sub: answer_forms(bench, [(a or [""])[0] for a in part["answers"].to_list()])
             for (bench, sub), part in items.group_by("benchmark", "subgroup")}
    requests = []
    for r in cands.iter_rows(named=True):
        record, image = sources[r["sample_id"]]
        if image is None:
            continue                  # a text-only neighbour has no image to generate about
        d = described[r["subgroup"]]
        shots = tuple((e["question"], e["answer"]) for e in json.loads(d["examples"]))
        requests.append((r["sample_id"], r["reference_item_id"],
                         GenRequest(r["benchmark"], r["subgroup"], d["description"], shots, image,
                                    record["image"]["sha256"], record, forms.get(r["subgroup"], ()))))
    generator = load_generator(step.generator, step.model, image_content=inputs.image_content)
    try:
        params_hash = content_digest([STEP.params_hash(step), generator.model_id, generator.prompt_version])[:12]
        results, stats = generate_all(requests, generator, st.child(CACHE_ROOT),
                                      on_batch=lambda done, total: inputs.log(f"generated {done}/{total}"))
    finally:
        generator.close()
    images = {sid: img for sid, (_, img) in sources.items()}
    results = _filter(inputs, step, results, images, duplicates_within_groups, perplexity_outliers, sample_vectors)

    kept = results.filter(pl.col("kept"))
    per_source = kept.group_by("source_sample_id").agg(pl.len().alias("n"), pl.col("subgroup").unique().sort())
    made = {sid: (n, subs) for sid, n, subs in per_source.iter_rows()}
    decisions = pool.select("sample_id", "domain").with_columns(
        pl.lit(params_hash).alias("params_hash"), pl.lit(None, dtype=pl.Float64).alias("score"),
        pl.lit("keep").alias("decision"),
        pl.col("sample_id").map_elements(
            lambda s: (f"source image of {made[s][0]} generated sample(s) for {', '.join(made[s][1])}"
                       if s in made else "not a generation source"), return_dtype=pl.String).alias("reason"),
        pl.lit(None, dtype=pl.String).alias("related_id"))
    per_subgroup = (results.group_by("subgroup").agg(
        pl.len().alias("requests"), pl.col("ok").sum().alias("valid"),
        pl.col("duplicate_of").is_not_null().sum().alias("duplicates"),
        pl.col("perplexity_outlier").sum().alias("perplexity_outliers"), pl.col("kept").sum().alias("kept"))
        .sort("subgroup"))
    inputs.log(f"{inputs.recipe}: {stats['requests']} requests, {stats['generated']} generated, "
               f"{stats['from_cache']} from the cache, {stats['valid']} valid, {kept.height} kept; "
               f"rejected {stats['rejected']}")
    return Decided(
        decisions, params_hash=params_hash, canaries=False,
        # without `cached`: where an output came from is not part of what was decided
        files={"generated.parquet": parquet_bytes(results.drop("cached").sort("gen_id"))},
        reports={"targets.json": json.dumps([s for s, _ in targets]).encode()},
        metadata={"generator": generator.name, "model_id": generator.model_id,
                  "prompt_version": generator.prompt_version, "reference_split": ref.get("reference_sets", {}),
                  "targeted_subgroups": [s for s, _ in targets], "requests": stats["requests"],
                  **({"score_with": step.score_with, "reference_scores_by_subgroup": pl.DataFrame(reference_scores)}
                     if reference_scores else {}),
                  "generated": stats["generated"], "from_cache": stats["from_cache"], "valid": stats["valid"],
                  "rejected": sum(stats["rejected"].values()), "rejected_by_reason": stats["rejected"],
                  "excluded_sources_near_eval_images": len(excluded), "kept": kept.height,
                  "per_subgroup": per_subgroup, "generation_seconds": time.perf_counter() - started})


def _reference_scores(inputs: StepInputs, scorer: str, bench: str, reference_items) -> dict[str, float]:
    """The scorer's mean score per subgroup of the benchmark's reference split, with the
    benchmark's own prompt and metric; stored by (model version, reference split version).
    `scorer`: `tiny` (the reference model, as perplexity's scorer) or a checkpoint in the store."""
    import polars as pl

    split = inputs.pointers("reference_sets")[bench]
    st = inputs.storage
    if scorer == REFERENCE_MODEL:
        from mm_assets.storage import local_dir

        pointer = inputs.pointers("reference_model")
        version, model = pointer["version"], partial(local_dir, st, pointer["root"])
    else:
        from mm_assets.checkpoints import checkpoint_version, verify_checkpoint
        from mm_assets.mixing.soups import model_dir

        if inputs.checkpoints is None:
            raise ValueError("mmgen `weakest` needs the checkpoint store")
        version = checkpoint_version(verify_checkpoint(inputs.checkpoints, scorer))
        model = partial(model_dir, inputs.checkpoints, scorer)
    rel = f"mmgen_reference_scores/{version}/{split['version']}/{bench}.parquet"
    if not st.exists(rel):
        from mm_assets.evaluation.backends import load_backend
        from mm_assets.evaluation.benchmarks import get as get_benchmark
        from mm_assets.evaluation.runner import evaluate

        with model() as path:
            backend = load_backend("hf", path)
            try:
                predictions = evaluate(backend, get_benchmark(bench), st.read_parquet(split["root"]))
            finally:
                backend.close()
        st.write_parquet(rel, predictions.select("item_id", "score"))
        inputs.log(f"{scorer} scored on the {bench} reference split: {predictions['score'].mean():.3f}")
    of_bench = reference_items.filter(pl.col("benchmark") == bench).select("item_id", "subgroup")
    scored = st.read_parquet(rel).join(of_bench, on="item_id")
    return dict(scored.group_by("subgroup").agg(pl.col("score").mean()).iter_rows())


def _filter(inputs: StepInputs, step: MmgenParams, results, images: dict, duplicates_within_groups,
            perplexity_outliers, sample_vectors):
    """Add `duplicate_of`, `nll`, `perplexity_outlier` and `kept` to the generation results."""
    import polars as pl

    valid = results.filter(pl.col("ok"))
    dup_of: dict[str, str] = {}
    nll: dict[str, float | None] = {}
    outlier: set[str] = set()
    if valid.height and step.filter.dedup:
        from mm_assets.embeddings import embed_texts
        from mm_assets.embeddings.assets import load_embedder_from_pointer
        from mm_assets.mining.assets import training_image_vectors

        model, tokenizer, _ = load_embedder_from_pointer(inputs.storage, inputs.pointers("embedder"))
        texts = [f"{q} {a}" for q, a in valid.select("question", "answer").iter_rows()]
        ids = valid["gen_id"].to_list()
        pool_ids, _, pool_vecs = training_image_vectors(inputs.storage, inputs.pointers("embeddings"))
        row_of = {sid: i for i, sid in enumerate(pool_ids)}
        sources = valid["source_sample_id"].to_list()
        missing = sorted({s for s in sources if s not in row_of})
        if missing:
            raise ValueError(f"mmgen: no image embedding for source sample(s) {missing[:5]}: materialize embeddings")
        vectors = sample_vectors(pool_vecs[[row_of[s] for s in sources]], embed_texts(model, tokenizer, texts))
        found = duplicates_within_groups(vectors, valid["subgroup"].to_list(), DEDUP_EPS)
        dup_of = {ids[i]: ids[j] for i, j in enumerate(found) if j is not None}
    rest = valid.filter(~pl.col("gen_id").is_in(list(dup_of)))
    if rest.height and step.filter.perplexity < 1.0:
        from mm_assets.mmgen.filters import nll_of_records
        from mm_assets.storage import local_dir
        from mm_assets.training.trainer import load_model_and_processor

        ptr = inputs.pointers("reference_model")
        with local_dir(inputs.storage, ptr["root"]) as path:
            model, processor = load_model_and_processor(path, "segments")
        records = [(g, json.loads(js), images[s]) for g, js, s in rest.select("gen_id", "json", "source_sample_id")
                   .iter_rows()]
        scores = nll_of_records(model, processor, records)
        nll = dict(zip(rest["gen_id"].to_list(), scores))
        flags = perplexity_outliers(scores, rest["subgroup"].to_list(), step.filter.perplexity)
        outlier = {g for g, f in zip(rest["gen_id"].to_list(), flags) if f}
    ids = results["gen_id"].to_list()
    return results.with_columns(
        pl.Series("duplicate_of", [dup_of.get(g) for g in ids], dtype=pl.String),
        pl.Series("nll", [nll.get(g) for g in ids], dtype=pl.Float64),
        pl.Series("perplexity_outlier", [g in outlier for g in ids], dtype=pl.Boolean),
    ).with_columns((pl.col("ok") & pl.col("duplicate_of").is_null() & ~pl.col("perplexity_outlier")).alias("kept"))


STEP = CurationStep(
    kind="mmgen", params=MmgenParams, code_version="3",   # 2: near-duplicates by image and text, not text alone;
    # 3: a RealWorldQA generation carries its options and answer instruction as the benchmark's items
    # do; generations answer in the forms of their subgroup's reference answers
    sections=(Section("mmgen", "targeted synthesis parameters (targets, generator, filters): read by mmgen_decisions",
                      lambda p: p.model_dump(mode="json")),),
    decided_by=("mmgen",),
    reads=("mmgen_reference", "reference_sets", "eval_neighbours", "eval_sets", "raw_shards", "samples", "embedder",
           "embeddings", "reference_model"),
    decide=decide,
    score_assets=("question_embeddings", "eval_embeddings", "eval_neighbours", "trusted_pool", "reference_model",
                  "reference_sets", "mmgen_reference"),
    assets_module="mm_assets.mmgen.assets",
    optional_reads=("mmgen_reference", "reference_sets"),
    description="Targeted synthesis (MM-GEN): question/answer text generated for training images near each target "
                "subgroup's reference items (template, HF or vLLM generator), cached and resumable, validated "
                "against the benchmark's metric, near-duplicates and perplexity outliers filtered; the generated "
                "samples join the curated dataset next to their source.",
)
