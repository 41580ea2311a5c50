"""Every soup of a set of experts, evaluated in Gray-code order (no Dagster here).

`write_subset_soups` writes the soup of every non-empty subset of the experts into the
checkpoint store (`soups.write_soup`), each named by its experts' labels. `sweep_soups` then
evaluates them on the benchmarks one after the other with one running sum: the next soup adds or
removes one expert (`merge.RunningSoup`), its weights go straight into a model in memory (no file),
and its predictions are stored where `eval_scores` looks for them — the same content-addressed
root (checkpoint version × eval set × prompt, metric, backend), the same files. When the
checkpoint sensor registers the soups, their `eval_scores` runs find the stored predictions and
generate nothing: the metrics, intervals, records, MLflow runs and leaderboard rows are those of
every checkpoint. Memory: the running float64 sum, one expert being read, one model.

The HF back end only (vLLM loads a directory: its soups are merged per evaluation by
`soups.model_dir` instead). Resumable: an evaluation already stored is skipped.

`search_soups` evaluates only the soups a search visits (`mm_assets/mixing/search.py`: greedy
soup, beam search, Dirichlet-weighted soups), each written into the store and evaluated by
`evaluate_soup` (merged from scratch in memory, uniform or weighted) where `eval_scores` finds it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from mm_assets.checkpoints import checkpoint_version, verify_checkpoint
from mm_assets.mixing.merge import RunningSoup, gray_code_subsets
from mm_assets.mixing.soups import SOUP, is_vision_tower, read_weights, verified_experts, write_soup
from mm_assets.storage import Storage, local_dir


@dataclass(frozen=True)
class EvalTarget:
    """One benchmark's eval set as `eval_scores` sees it."""
    bench: object                  # mm_assets.evaluation.benchmarks.Benchmark
    items: pl.DataFrame            # already cut to max_items
    eval_set_version: str
    max_items: int


def write_subset_soups(store: Storage, experts: Mapping[str, str]) -> dict[frozenset[str], str]:
    """The uniform soup of every non-empty subset of `experts` ({label: checkpoint name}), in
    Gray-code order; returns {subset of labels: soup name}."""
    labels = list(experts)
    manifests = dict(zip(labels, verified_experts(store, [experts[label] for label in labels])))   # hashed once
    out = {}
    for _, _, subset in gray_code_subsets(len(labels)):
        chosen = [labels[i] for i in sorted(subset)]
        out[frozenset(chosen)] = write_soup(store, [experts[label] for label in chosen], label="+".join(chosen),
                                            manifests=[manifests[label] for label in chosen])
    return out


def sweep_soups(store: Storage, results: Storage, soups: Sequence[str], targets: Sequence[EvalTarget],
                backend: str = "hf", batch_size: int = 8, device: str = "cpu",
                progress: Callable[[str, str], None] | None = None) -> dict:
    """Evaluate uniform soups of one set of experts on every target, in Gray-code order of their
    subsets; store each evaluation that is not stored yet. Returns counts."""
    from mm_assets.mixing.merge import merge_plan

    if backend != "hf":
        raise ValueError(f"the Gray-code sweep runs on the hf back end (got {backend!r}); the eval_scores runs "
                         "merge each soup for other back ends")
    specs = {name: json.loads(store.read_bytes(f"{name}/{SOUP}")) for name in soups}
    experts: list[dict] = []
    for spec in specs.values():
        if spec["weights"] is not None:
            raise ValueError("the sweep takes uniform soups; weighted ones are evaluated one by one")
        for e in spec["experts"]:
            if e not in experts:
                experts.append(e)
    manifests = verified_experts(store, [e["name"] for e in experts], [e["version"] for e in experts])
    index = {e["name"]: i for i, e in enumerate(experts)}
    rank = {subset: n for n, (_, _, subset) in enumerate(gray_code_subsets(len(experts)))}
    order = sorted(soups, key=lambda s: rank[frozenset(index[e["name"]] for e in specs[s]["experts"])])

    def load(i: int) -> dict:
        return read_weights(store, experts[i]["name"], manifests[i])

    plan = merge_plan(load(0), frozen=is_vision_tower)
    running = RunningSoup(plan, load)
    counts = {"soups": len(order), "evaluations_stored": 0, "evaluations_found": 0, "experts_read": 0,
              "seconds_merging": 0.0, "seconds_evaluating": 0.0}
    for name in order:
        version, roots, todo = _stored(store, results, name, targets, backend)
        counts["evaluations_found"] += len(targets) - len(todo)
        if not todo:
            continue
        merging = time.perf_counter()
        wanted = {index[e["name"]] for e in specs[name]["experts"]}
        for i in sorted(running.members - wanted):
            running.remove(i)
            counts["experts_read"] += 1
        for i in sorted(wanted - running.members):
            running.add(i)
            counts["experts_read"] += 1
        weights = running.soup()
        evaluating = time.perf_counter()
        counts["seconds_merging"] += evaluating - merging
        counts["evaluations_stored"] += _evaluate_weights(store, results, name, version, weights, todo, roots, backend,
                                                          batch_size, device, progress)
        counts["seconds_evaluating"] += time.perf_counter() - evaluating
    return counts


def _stored(store: Storage, results: Storage, name: str, targets: Sequence[EvalTarget], backend: str):
    """A soup's version, its evaluations' roots (as `eval_scores` names them) and the targets
    not evaluated yet."""
    from mm_assets.evaluation.runner import eval_root, eval_version

    version = checkpoint_version(verify_checkpoint(store, name))
    roots = {t.bench.name: eval_root(t.bench.name, eval_version(version, t.eval_set_version, backend, t.bench,
                                                                t.max_items)) for t in targets}
    return version, roots, [t for t in targets if not results.exists(f"{roots[t.bench.name]}/result.json")]


def _evaluate_weights(store: Storage, results: Storage, name: str, version: str, weights: dict,
                      todo: Sequence[EvalTarget], roots: dict[str, str], backend: str, batch_size: int, device: str,
                      progress: Callable[[str, str], None] | None = None) -> int:
    """Load the soup's merged weights into a model in memory (HF back end), evaluate and store
    each target; returns how many were stored."""
    import torch

    from mm_assets.evaluation.backends.hf import HFBackend
    from mm_assets.evaluation.runner import evaluate, write_result
    from mm_assets.vlm.tiny_llava import load_llava_with_weights

    with local_dir(store, name) as config_dir:
        model, processor = load_llava_with_weights(config_dir, weights, dtype=torch.float32, device=device)
    with HFBackend(name, batch_size=batch_size, device=device, loaded=(model, processor)) as generator:
        for t in todo:
            if progress:
                progress(name, t.bench.name)
            predictions = evaluate(generator, t.bench, t.items, batch_size=batch_size)
            write_result(results, roots[t.bench.name], predictions, t.bench, version, backend, t.eval_set_version)
    return len(todo)



def evaluate_soup(store: Storage, results: Storage, name: str, targets: Sequence[EvalTarget], backend: str = "hf",
                  batch_size: int = 8, device: str = "cpu", verified: dict[str, dict] | None = None
                  ) -> dict[str, float]:
    """One soup's score on every target (uniform or weighted: merged from scratch in memory),
    stored where `eval_scores` looks; evaluations already stored are read, not generated.
    `verified`: the experts' manifests already verified, by name (not hashed again)."""
    from mm_assets.mixing.soups import soup_weights

    version, roots, todo = _stored(store, results, name, targets, backend)
    if todo:
        if backend != "hf":
            raise ValueError(f"soups are evaluated in memory on the hf back end (got {backend!r})")
        state = soup_weights(store, json.loads(store.read_bytes(f"{name}/{SOUP}")), verified)
        _evaluate_weights(store, results, name, version, state, todo, roots, backend, batch_size, device)
    return {t.bench.name: float(results.read_json(f"{roots[t.bench.name]}/result.json")["score"]) for t in targets}


SEARCHES = ("greedy", "beam", "dirichlet")


def search_soups(store: Storage, results: Storage, experts: Mapping[str, str], targets: Sequence[EvalTarget],
                 method: str, width: int = 2, budget: int | None = None, alpha: float = 1.0, seed: int = 0,
                 progress: Callable[[str, float], None] | None = None, **evaluation) -> tuple:
    """Search soups of `experts` ({label: checkpoint}) evaluating only the soups the search visits
    (each written into the checkpoint store, so the sensor registers it and its `eval_scores`
    runs reuse what is stored here); the objective is the average over `targets`. `greedy`
    (greedy soup), `beam` (width `width`) or `dirichlet` (weighted soups, `budget` of them).
    Returns the search result (mm_assets.mixing.search.SearchResult) and {key: soup name}."""
    from mm_assets.mixing.search import beam_search, dirichlet_search, greedy_soup

    labels = list(experts)
    manifests = dict(zip(labels, verified_experts(store, [experts[label] for label in labels])))
    by_name = {experts[label]: manifest for label, manifest in manifests.items()}
    names: dict = {}

    def score(key, chosen: list[str], weights: list[float] | None, label: str) -> float:
        names[key] = write_soup(store, [experts[c] for c in chosen], weights, label=label,
                                manifests=[manifests[c] for c in chosen])
        scores = evaluate_soup(store, results, names[key], targets, verified=by_name, **evaluation)
        average = sum(scores.values()) / len(scores)
        if progress:
            progress(names[key], average)
        return average

    def subset(key: frozenset) -> float:
        chosen = [label for label in labels if label in key]
        return score(key, chosen, None, "+".join(chosen))

    def weighted(key: tuple) -> float:
        return score(key, labels, list(key), "weighted-" + "+".join(labels))

    if method == "greedy":
        result = greedy_soup(labels, subset, budget)
    elif method == "beam":
        result = beam_search(labels, subset, width, budget)
    elif method == "dirichlet":
        if not budget:
            raise ValueError("a Dirichlet search needs a budget (how many weighted soups to evaluate)")
        result = dirichlet_search(len(labels), weighted, budget, alpha=alpha, seed=seed)
    else:
        raise ValueError(f"unknown search {method!r}; one of {SEARCHES}")
    return result, names
