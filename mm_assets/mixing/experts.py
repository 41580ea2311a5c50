"""Dagster assets of data mixing by merging: the shared start, one expert per domain, and the
Gray-code sweep of every subset soup of the experts.

- `mixing_start`: a short general run from the base model on every curated domain of the mixing
  recipe (`MixingResource.recipe`, default baseline), `start_budget_tokens` long. It also counts
  each domain's tokens: the experts' budget is one pass over the largest domain unless set.
- `domain_expert[domain]`: from the start's checkpoint, the recipe's curated data of that one
  domain, the same token budget for every domain (smaller domains repeat). A sealed checkpoint
  like any other: the checkpoint sensor registers it and requests its evals; its manifest names
  the curated version it was trained on and the start checkpoint (name and version), so
  `mm-curation lineage` walks expert → start → base model and curated datasets.
- `mixture_run[mixture]`: a model trained for real on a mixture of domains (`chart+ocr`), from
  the start at the experts' budget, each domain an equal share by whole repeats — what the soup
  of those experts stands in for (`proxy_check` in assets.py compares the two).
- `soup_sweep`: the uniform soup of every subset of the materialized experts, written into the
  checkpoint store and evaluated in Gray-code order with one running sum
  (`mm_assets/mixing/sweep.py`) on the registered eval sets; the sensor then registers the soups
  and their `eval_scores` runs reuse the stored predictions, and `mixing_table` collects them.
  It holds one slot of the eval pool (it loads one model at a time).

Only `start_checkpoint` and `curated_versions` differ from `training_run`'s checkpoints; the
trainer, the checkpoint format and the resumption after a kill are the same.
"""

import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from mm_assets.evaluation.assets import EVAL_POOL
from mm_assets.metadata import content_digest, markdown_table
from mm_assets.mixing.proxy import equal_share_repeats, mixture_domains, of_start, start_ref
from mm_assets.partitions import domain_partitions, mixture_partitions, recipe_domain_partitions
from mm_assets.storage import Storage, local_dir
from mm_assets.training.assets import TRAINING_CODE_VERSION, base_model_dir, log_training_mlflow, train_one_seed
from resources.evaluation import CheckpointStoreResource, EvalBackendResource, MlflowResource
from resources.mixing import MixingResource
from resources.storage import StorageResource
from resources.training import TrainingResource

BY_DOMAIN = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="domain")
ANY = {"metadata": {"allow_missing_partitions": True}}


def _of_recipe(curated_dataset: dict, recipe: str) -> dict[str, dict]:
    """{domain: curated pointer} of one recipe, from a multi-partition input."""
    out = {}
    for key, pointer in curated_dataset.items():
        dims = recipe_domain_partitions.get_partition_key_from_str(key).keys_by_dimension
        if dims["recipe"] == recipe:
            out[dims["domain"]] = pointer
    if not out:
        recipes = sorted({recipe_domain_partitions.get_partition_key_from_str(k).keys_by_dimension["recipe"]
                          for k in curated_dataset})
        raise ValueError(f"the mixing recipe {recipe!r} has no curated datasets (materialized: {recipes or 'none'}); "
                         f"materialize curated_dataset for it or set MM_MIXING_RECIPE")
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class _Resources:
    training: TrainingResource
    mixing: MixingResource
    store: Storage            # the checkpoint store
    st: Storage               # artifacts
    mlflow: MlflowResource


def _train(context, run_name: str, recipe: str, curated: dict[str, dict], model_dir: str, budget: int,
           res: _Resources, parent: dict, from_start: bool, repeats: dict[str, int] | None = None
           ) -> tuple[dict, dict[str, int]]:
    """One training run from `model_dir` (the base model, or the start checkpoint when
    `from_start`; `parent`: its version and uri, and name for the start) to `budget` tokens with
    one final checkpoint. `repeats`: whole repeats of a domain's samples in the data (default 1).
    Returns the run's summary and each domain's tokens (one pass, before repeats)."""
    from mm_assets.training.trainer import TrainConfig, encode_shards

    training, seed = res.training, res.mixing.seed
    repeats = repeats or {}
    curated_versions = {d: p["version"] for d, p in curated.items()}
    settings = dict(training.model_dump(), budget_tokens=budget, seeds=[seed], checkpoint_fractions=[1.0],
                    **({"domain_repeats": repeats} if repeats else {}))
    trajectory = {k: v for k, v in settings.items() if k not in ("checkpoint_fractions", "seeds")}
    digest = content_digest([TRAINING_CODE_VERSION, curated_versions, trajectory, parent["version"], seed])
    run_id = f"{run_name}-seed{seed}-{digest[:8]}"
    with contextlib.ExitStack() as stack:
        dirs = {d: stack.enter_context(local_dir(res.st, p["root"])) for d, p in curated.items()}
        shards = {d: [str(t) for t in sorted(Path(path).glob("*.tar"))] for d, path in dirs.items()}
        per_domain = {d: encode_shards(model_dir, paths, training.max_len) for d, paths in shards.items()}
        samples = [s for d in per_domain for s in per_domain[d][0] * repeats.get(d, 1)]
        skipped = sum((per_domain[d][1] for d in per_domain), start=Counter())
        cfg = TrainConfig(training_run=run_id, recipe=recipe, curated_versions=curated_versions,
                          model_name=f"tiny-llava ({training.base_model})", budget_tokens=budget,
                          checkpoint_fractions=(1.0,), save_each_epoch=False, seed=seed, **training.optimisation(),
                          base_model_version=parent["version"], base_model_uri=parent["uri"],
                          start_checkpoint={"name": parent["name"], "version": parent["version"]} if from_start
                          else None)
        summary, curve = train_one_seed(context, cfg, settings, res.store, model_dir,
                                        [p for d in shards for p in shards[d]], (samples, skipped))
    log_training_mlflow(res.mlflow, context.run_id, summary, curve)
    res.st.write_json(f"training_runs/{run_id}/summary.json", summary)
    return summary, {d: sum(s.length for s in per_domain[d][0]) for d in per_domain}


def _from_start(context, run_name: str, curated: dict[str, dict], mixing_start: dict, res: _Resources,
                repeats: dict[str, int] | None = None) -> tuple[dict, dict]:
    """A run from the shared start on `curated`'s domains at the experts' budget: the asset's
    value (its final checkpoint and what it was trained from) and metadata."""
    budget = mixing_start["expert_budget_tokens"]
    started = time.perf_counter()
    with local_dir(res.store, mixing_start["name"]) as start_dir:
        summary, tokens = _train(context, run_name, mixing_start["recipe"], curated, start_dir, budget, res,
                                 mixing_start, from_start=True, repeats=repeats)
    pointer = _checkpoint_pointer(res.store, summary)
    value = {**pointer, "recipe": mixing_start["recipe"], "training_run": summary["training_run"],
             "start": start_ref(mixing_start),
             "budget_tokens": budget, "tokens_seen": summary["tokens_seen"]}
    metadata = {"checkpoint": pointer["name"], "version": pointer["version"], "budget_tokens": budget,
                "tokens_seen": summary["tokens_seen"], "domain_tokens": dg.MetadataValue.json(tokens),
                "passes": round(summary["epochs_seen"], 3), "loss_last_10pct": summary["loss_last_10pct"],
                "seconds": time.perf_counter() - started}
    return value, metadata


def _checkpoint_pointer(store: Storage, summary: dict) -> dict:
    from mm_assets.checkpoints import checkpoint_version, verify_checkpoint

    name = summary["checkpoints"][-1]
    return {"name": name, "version": checkpoint_version(verify_checkpoint(store, name)), "uri": store.uri(name)}


@dg.asset(group_name="mixing", kinds={"pytorch", "safetensors"},
          ins={"curated_dataset": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(), **ANY),
               "base_model": dg.AssetIn()},
          description="The experts' shared start: a short general training run from the base model on every "
                      "curated domain of the mixing recipe (MM_MIXING_RECIPE, default baseline). Counts each "
                      "domain's tokens, which set the experts' budget (one pass over the largest domain).")
def mixing_start(context: dg.AssetExecutionContext, curated_dataset: dict, base_model: dict,
                 storage: StorageResource, checkpoints: CheckpointStoreResource, training: TrainingResource,
                 mixing: MixingResource, mlflow: MlflowResource) -> dg.Output[dict]:
    st, store = storage.get(), checkpoints.get()
    curated = _of_recipe(curated_dataset, mixing.recipe)
    started = time.perf_counter()
    res = _Resources(training, mixing, store, st, mlflow)
    with base_model_dir(st, base_model) as base_dir:
        summary, tokens = _train(context, f"mixstart-{mixing.recipe}", mixing.recipe, curated, base_dir,
                                 mixing.start_budget_tokens, res, base_model, from_start=False)
    pointer = _checkpoint_pointer(store, summary)
    expert_budget = mixing.expert_budget_tokens or max(tokens.values())
    value = {**pointer, "recipe": mixing.recipe, "training_run": summary["training_run"],
             "curated_versions": summary["curated_versions"], "domain_tokens": tokens,
             "expert_budget_tokens": expert_budget}
    return dg.Output(value, data_version=dg.DataVersion(content_digest(value)),
                     metadata={"checkpoint": pointer["name"], "version": pointer["version"],
                               "recipe": mixing.recipe, "tokens_seen": summary["tokens_seen"],
                               "expert_budget_tokens": expert_budget,
                               "domain_tokens": dg.MetadataValue.json(tokens),
                               "loss_last_10pct": summary["loss_last_10pct"],
                               "seconds": time.perf_counter() - started})


@dg.asset(group_name="mixing", partitions_def=domain_partitions, kinds={"pytorch", "safetensors"},
          ins={"curated_dataset": dg.AssetIn(partition_mapping=BY_DOMAIN, **ANY), "mixing_start": dg.AssetIn()},
          description="One expert per domain: from the shared start, the mixing recipe's curated data of this "
                      "domain only, the same token budget for every domain (smaller domains repeat). A sealed "
                      "checkpoint the sensor registers and evaluates, with lineage to its curated version and "
                      "the start.")
def domain_expert(context: dg.AssetExecutionContext, curated_dataset: dict, mixing_start: dict,
                  storage: StorageResource, checkpoints: CheckpointStoreResource, training: TrainingResource,
                  mixing: MixingResource, mlflow: MlflowResource) -> dg.Output[dict]:
    domain = context.partition_key
    st, store = storage.get(), checkpoints.get()
    curated = _of_recipe(curated_dataset, mixing_start["recipe"])
    if domain not in curated:
        raise ValueError(f"no curated dataset of recipe {mixing_start['recipe']!r} for domain {domain!r}")
    value, metadata = _from_start(context, f"expert-{mixing_start['recipe']}-{domain}", {domain: curated[domain]},
                                  mixing_start, _Resources(training, mixing, store, st, mlflow))
    return dg.Output({**value, "domain": domain}, data_version=dg.DataVersion(value["version"]), metadata=metadata)


@dg.asset(group_name="mixing", ins={"domain_expert": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(), **ANY),
                                    "eval_sets": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(), **ANY),
                                    "mixing_start": dg.AssetIn()},
          pool=EVAL_POOL,
          description="The uniform soup of every subset of the materialized domain experts, written into the "
                      "checkpoint store and evaluated in Gray-code order (one expert added or removed per soup, "
                      "one running sum) on the eval sets the checkpoint sensor evaluates; the soups' own "
                      "eval_scores runs then reuse the stored predictions.")
def soup_sweep(context: dg.AssetExecutionContext, domain_expert: dict, eval_sets: dict, mixing_start: dict,
               storage: StorageResource, checkpoints: CheckpointStoreResource,
               eval_backend: EvalBackendResource) -> dg.Output[dict]:
    from mm_assets.evaluation.benchmarks import get as get_benchmark
    from mm_assets.evaluation.runner import eval_items
    from mm_assets.mixing.sweep import EvalTarget, sweep_soups, write_subset_soups

    st, store = storage.get(), checkpoints.get()
    start = start_ref(mixing_start)
    budget = mixing_start["expert_budget_tokens"]
    domain_expert, stale = of_start(domain_expert, start, budget)
    if stale:
        context.log.warning(f"experts {stale} were trained from another start or budget than {start['name']} at "
                            f"{budget} tokens: left out (materialize domain_expert for them again to include them)")
    if len(domain_expert) < 2:
        raise ValueError(f"a sweep needs at least two experts of the current start {start['name']} "
                         f"(materialized: {sorted(domain_expert) or 'none'}; of another start: {stale or 'none'})")
    benchmarks = [b for b in checkpoints.benchmarks() if b in eval_sets]
    if not benchmarks:
        raise ValueError(f"none of the benchmarks the sensor evaluates on ({list(checkpoints.benchmarks())}) has an "
                         "eval set yet: materialize eval_sets first")
    experts = {domain: pointer["name"] for domain, pointer in sorted(domain_expert.items())}
    started = time.perf_counter()
    soups = write_subset_soups(store, experts)
    targets = [EvalTarget(get_benchmark(b), eval_items(st, eval_sets[b], eval_backend.max_items),
                          eval_sets[b]["version"], eval_backend.max_items) for b in benchmarks]
    counts = sweep_soups(store, st, list(soups.values()), targets, backend=eval_backend.kind,
                         batch_size=eval_backend.batch_size, device=eval_backend.device,
                         progress=lambda soup, bench: context.log.info(f"{soup} on {bench}"))
    value = {"soups": {"+".join(sorted(subset)): name for subset, name in soups.items()},
             "experts": {d: {"name": p["name"], "version": p["version"]} for d, p in sorted(domain_expert.items())},
             "benchmarks": benchmarks, "start": start, "budget_tokens": budget}
    return dg.Output(value, data_version=dg.DataVersion(content_digest(value)),
                     metadata={**counts, "benchmarks": dg.MetadataValue.json(benchmarks),
                               "experts_of_another_start": dg.MetadataValue.json(stale),
                               "experts": dg.MetadataValue.md(markdown_table(pl.DataFrame(
                                   {"domain": list(experts), "checkpoint": list(experts.values())}))),
                               "seconds": time.perf_counter() - started})


@dg.asset(group_name="mixing", partitions_def=mixture_partitions, kinds={"pytorch", "safetensors"},
          ins={"curated_dataset": dg.AssetIn(partition_mapping=dg.AllPartitionMapping(), **ANY),
               "mixing_start": dg.AssetIn()},
          description="A model trained for real on one data mixture (the partition names its domains, e.g. "
                      "chart+ocr): from the shared start, at the experts' token budget, each domain an equal share "
                      "of the data by whole repeats. What the soup of those domains' experts stands in for; the "
                      "proxy check compares the two.")
def mixture_run(context: dg.AssetExecutionContext, curated_dataset: dict, mixing_start: dict,
                storage: StorageResource, checkpoints: CheckpointStoreResource, training: TrainingResource,
                mixing: MixingResource, mlflow: MlflowResource) -> dg.Output[dict]:
    label = context.partition_key
    recipe = mixing_start["recipe"]
    curated = _of_recipe(curated_dataset, recipe)
    domains = mixture_domains(label, list(curated))
    st, store = storage.get(), checkpoints.get()
    repeats = equal_share_repeats({d: mixing_start["domain_tokens"][d] for d in domains})
    value, metadata = _from_start(context, f"mixture-{recipe}-{label}", {d: curated[d] for d in domains},
                                  mixing_start, _Resources(training, mixing, store, st, mlflow), repeats)
    return dg.Output({**value, "mixture": label, "domains": domains, "repeats": repeats},
                     data_version=dg.DataVersion(value["version"]),
                     metadata={**metadata, "repeats": dg.MetadataValue.json(repeats)})
