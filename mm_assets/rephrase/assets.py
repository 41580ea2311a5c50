"""`rephrase_decisions[recipe]`: the recipe's rephrasing step over the whole pool.

Generation is the expensive part and is cached by (text hash, model, prompt version) in one
store shared by every recipe (`rephrase_cache/`), one chunk per completed batch: a run killed
midway resumes where it stopped, and a recipe that selects samples another recipe already
rephrased generates nothing. Every output is validated; a rejected rewrite keeps the original
and its reason goes into the decisions (and the ledger).
"""

import json
import time

import dagster as dg
import polars as pl

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.curated.step_outputs import decisions_output, not_in_recipe
from mm_assets.embeddings.assets import shard_uris
from mm_assets.metadata import content_digest
from mm_assets.partitions import recipe_partitions
from mm_assets.recipes.assets import section_key
from mm_assets.recipes.sections import step_params_hash
from mm_assets.storage import parquet_bytes
from resources.recipes import RecipesResource
from resources.storage import StorageResource

REPHRASE_CODE_VERSION = "1"
CACHE_ROOT = "rephrase_cache"


def _records(st, raw_shards: dict):
    from mm_assets.embeddings.inference import iter_shard_samples

    for domain in sorted(raw_shards):
        raw, tars = shard_uris(st, raw_shards[domain])
        for sid, meta, _ in iter_shard_samples(raw.uri(t) for t in tars):
            yield domain, sid, meta


@dg.asset(group_name="curation_steps", partitions_def=recipe_partitions, code_version=REPHRASE_CODE_VERSION,
          kinds={"parquet"}, automation_condition=ON_CHANGED_DATA,
          ins={"raw_shards": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
          deps=[section_key("rephrase")],
          description="Rephrased text of a recipe's selected samples (template, HF or vLLM back end), cached by "
                      "(text hash, model, prompt version) and resumable; every rewrite validated (answers, "
                      "numbers, <image> kept) — rejected ones keep the original, with the reason in the ledger.")
def rephrase_decisions(context: dg.AssetExecutionContext, raw_shards: dict, storage: StorageResource,
                       recipes: RecipesResource) -> dg.Output[dict]:
    from mm_assets.rephrase import (load_rephraser, rephrase_decisions as decide, rephrase_samples,
                                    rewrites_by_sample, rewritten_record, select_for_rephrase)

    name = context.partition_key
    step = recipes.get(name).step("rephrase")
    if step is None:
        return not_in_recipe(context, "rephrase")
    started = time.perf_counter()
    st = storage.get()
    backend = load_rephraser(step.backend, step.style, step.model)
    params_hash = content_digest([step_params_hash("rephrase", step), backend.model_id, backend.prompt_version])[:12]
    records = list(_records(st, raw_shards))
    by_domain: dict[str, list[str]] = {}
    for domain, sid, _ in records:
        by_domain.setdefault(domain, []).append(sid)
    selected = set().union(*(select_for_rephrase(ids, step.fraction, step.salt) for ids in by_domain.values()))
    chosen = {sid: meta for _, sid, meta in records if sid in selected}
    results, stats = rephrase_samples(list(chosen.items()), backend, st.child(CACHE_ROOT),
                                      on_batch=lambda done, total: context.log.info(f"rephrased {done}/{total}"))
    decisions = pl.concat([
        decide(ids, results.filter(pl.col("sample_id").is_in(ids)), fraction=step.fraction, salt=step.salt,
               domain=domain, params_hash=params_hash) for domain, ids in sorted(by_domain.items())])
    rewrites = {sid: json.dumps(rewritten_record(chosen[sid], turns), ensure_ascii=False, sort_keys=True).encode()
                for sid, turns in rewrites_by_sample(results).items()}
    rewrites_table = pl.DataFrame({"sample_id": list(rewrites), "json": [v.decode() for v in rewrites.values()]},
                                  schema={"sample_id": pl.String, "json": pl.String}).sort("sample_id")
    rejected = stats["rejected"]
    context.log.info(f"{name}: {stats['samples']} samples selected, {stats['generated']} texts generated, "
                     f"{stats['from_cache']} from the cache, {sum(rejected.values())} rewrites rejected {rejected}")
    return decisions_output(
        st, "rephrase_decisions", name, REPHRASE_CODE_VERSION, params_hash, decisions,
        files={"rewrites.parquet": parquet_bytes(rewrites_table), "results.parquet": parquet_bytes(results)},
        metadata={"backend": backend.name, "model_id": backend.model_id, "prompt_version": backend.prompt_version,
                  "selected": stats["samples"], "turns": stats["turns"], "generated": stats["generated"],
                  "from_cache": stats["from_cache"], "rewritten_samples": len(rewrites),
                  "rejected": sum(rejected.values()), "rejected_by_reason": dg.MetadataValue.json(rejected),
                  "skipped_by_reason": dg.MetadataValue.json(stats["skipped"]),
                  "seconds": time.perf_counter() - started})
