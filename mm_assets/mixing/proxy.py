"""Does the merge proxy rank mixtures as training on them does? (no Dagster here)

`rank_agreement` takes, for the same K mixtures, the soup's score and the score of a model
trained on the actual mixture, and returns Spearman's ρ with a percentile bootstrap interval
over the mixtures (resampled with replacement; a resample whose ranks are all tied on one side
has no ρ and is dropped, and counted). With K = 8 the interval is wide: that is the honest
statement of what eight mixtures can show.

A mixture is a set of domains, named by them joined with "+" in sorted order ("chart+ocr"), as
the soup of their experts is. Trained for real (`mixture_run`), each domain gets an equal share
of the data — the uniform soup weighs its experts equally — by whole repeats of the smaller
domains' samples (`equal_share_repeats`). A one-domain mixture is its expert, so the proxy and
the real model would be the same model: the check uses mixtures of two or more domains.

Experts, soups and real mixtures compare only when trained from the same start at the same
budget: a home where the mixing settings changed holds runs of several starts (`of_start`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their ranks (as Spearman's ρ needs)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    start = 0
    for end in range(1, values.size + 1):
        if end == values.size or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation of the average ranks; nan when either side is constant."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def rank_agreement(proxy: Mapping, real: Mapping, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Spearman's ρ between proxy and real scores of the mixtures both have, with its interval."""
    keys = sorted(set(proxy) & set(real), key=str)
    if len(keys) < 3:
        raise ValueError(f"rank agreement needs at least 3 mixtures scored both ways (got {len(keys)})")
    x = np.array([proxy[k] for k in keys], dtype=np.float64)
    y = np.array([real[k] for k in keys], dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(n_boot, len(keys)))
    boot = np.array([spearman(x[d], y[d]) for d in draws])
    kept = boot[~np.isnan(boot)]
    lo, hi = (np.quantile(kept, [(1 - level) / 2, 1 - (1 - level) / 2]) if kept.size else (np.nan, np.nan))
    return {"rho": spearman(x, y), "ci95_low": float(lo), "ci95_high": float(hi), "mixtures": len(keys),
            "resamples": int(kept.size), "resamples_without_rho": int(boot.size - kept.size)}


def mixture_label(domains: Sequence[str]) -> str:
    return "+".join(sorted(domains))


def mixture_domains(label: str, known: Sequence[str]) -> list[str]:
    """The domains a mixture's name lists; an error names what is wrong with it."""
    domains = label.split("+")
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise ValueError(f"mixture {label!r}: unknown domain(s) {unknown}; known: {list(known)}")
    if len(set(domains)) != len(domains) or label != mixture_label(domains):
        raise ValueError(f"mixture {label!r}: name it by its domains, each once, in sorted order: "
                         f"{mixture_label(set(domains))!r}")
    if len(domains) < 2:
        raise ValueError(f"mixture {label!r} has one domain: that model is domain_expert[{label}]")
    return domains


def equal_share_repeats(tokens: Mapping[str, int]) -> dict[str, int]:
    """Whole repeats per domain that bring each domain's tokens closest to the largest's."""
    most = max(tokens.values())
    return {d: max(1, round(most / t)) if t else 1 for d, t in sorted(tokens.items())}


def spread_over_ranking(scores: Mapping[str, float], k: int, min_size: int = 2) -> list[str]:
    """`k` mixtures (of at least `min_size` domains) at evenly spaced places of the ranking by
    score, best and worst included: the real-mixture runs the proxy check trains."""
    ranked = sorted((m for m in scores if len(m.split("+")) >= min_size), key=lambda m: (-scores[m], m))
    if k >= len(ranked):
        return ranked
    return [ranked[round(i * (len(ranked) - 1) / (k - 1))] for i in range(k)] if k > 1 else ranked[:1]


def start_ref(start: Mapping) -> dict:
    """How a run names the start it was trained from: the start checkpoint's name and version."""
    return {"name": start["name"], "version": start["version"]}


def of_start(runs: Mapping[str, dict], start: Mapping, budget_tokens: int) -> tuple[dict[str, dict], list[str]]:
    """Split `runs` (key -> an expert's or a mixture's pointer, which names its `start` checkpoint
    and `budget_tokens`) into those trained from `start` at `budget_tokens`, and the keys of the
    others (stale: trained before the start or the budget changed)."""
    wanted = start_ref(start)
    current = {k: r for k, r in runs.items() if r.get("start") == wanted and r.get("budget_tokens") == budget_tokens}
    return current, sorted(set(runs) - set(current))
