"""Searching mixtures of experts without evaluating every soup (no Dagster here).

Each search calls an objective — a soup's score, e.g. its average over benchmarks — through a
`Budgeted` wrapper that caches it (a soup is evaluated once however often a search asks) and
records the best score found after each new evaluation: the curve "evaluations spent vs best
found" that the mixing table compares against the exhaustive table.

- `greedy_soup`: Wortsman et al. 2022 (model soups, Recipe 1): every expert alone, then in order of
  its own score each is added to the soup when the soup does not get worse. n + (n − 1) evaluations.
- `beam_search`: over subsets by size: all singletons, then each of the `width` best soups of the
  last size grown by every expert it lacks; stops when a size finds nothing better than the best
  so far. `width=1` is forward selection.
- `dirichlet_search`: weighted soups: the uniform weights first, then weights drawn from a
  Dirichlet distribution (concentration `alpha`; below 1 favours few experts), `budget` in all.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Budgeted:
    """An objective, cached, counting its evaluations and the best score after each."""
    objective: Callable[[Hashable], float]
    budget: int | None = None
    scores: dict = field(default_factory=dict)
    curve: list[tuple[int, float, Hashable]] = field(default_factory=list)   # (evaluations, best, its key)
    best: tuple[Hashable, float] | None = None       # ties go to the first found

    def __call__(self, key: Hashable) -> float:
        if key not in self.scores:
            if self.exhausted:
                raise BudgetSpent(key)
            score = float(self.objective(key))
            self.scores[key] = score
            if self.best is None or score > self.best[1]:
                self.best = (key, score)
            self.curve.append((len(self.scores), self.best[1], self.best[0]))
        return self.scores[key]

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and len(self.scores) >= self.budget


class BudgetSpent(Exception):
    """The search asked for a new evaluation after its budget was spent."""


@dataclass(frozen=True)
class SearchResult:
    method: str
    best: Hashable                 # a frozenset of experts, or a tuple of weights
    score: float
    evaluations: int
    curve: list[tuple[int, float, Hashable]]
    scores: dict                   # every evaluated key's score, in evaluation order


def _result(method: str, scored: Budgeted) -> SearchResult:
    key, score = scored.best
    return SearchResult(method, key, score, len(scored.scores), list(scored.curve), dict(scored.scores))


def greedy_soup(experts: Sequence[str], objective: Callable[[frozenset], float],
                budget: int | None = None) -> SearchResult:
    scored = Budgeted(objective, budget)
    try:
        alone = sorted(experts, key=lambda e: -scored(frozenset([e])))     # stable: ties keep the given order
        soup = frozenset([alone[0]])
        for expert in alone[1:]:
            grown = soup | {expert}
            if scored(grown) >= scored(soup):
                soup = grown
    except BudgetSpent:
        pass
    return _result("greedy soup", scored)


def beam_search(experts: Sequence[str], objective: Callable[[frozenset], float], width: int = 2,
                budget: int | None = None) -> SearchResult:
    if width < 1:
        raise ValueError(f"beam width must be at least 1 (got {width})")
    scored = Budgeted(objective, budget)
    order = {e: i for i, e in enumerate(experts)}

    def ranked(subsets: list[frozenset]) -> list[frozenset]:
        return sorted(subsets, key=lambda s: (-scored(s), sorted(order[e] for e in s)))

    try:
        beam = ranked([frozenset([e]) for e in experts])[:width]
        best = scored.best[1]
        while beam and len(beam[0]) < len(experts):
            grown = {s | {e} for s in beam for e in experts if e not in s}
            level = ranked(sorted(grown, key=lambda s: sorted(order[e] for e in s)))
            if not level or scored(level[0]) <= best:
                break
            best, beam = scored(level[0]), level[:width]
    except BudgetSpent:
        pass
    return _result(f"beam search (width {width})", scored)


def dirichlet_search(n_experts: int, objective: Callable[[tuple[float, ...]], float], budget: int,
                     alpha: float = 1.0, seed: int = 0) -> SearchResult:
    """Weights as tuples rounded to 4 decimals (so a soup's key is stable); they sum to 1 up to
    that rounding."""
    if n_experts < 1 or budget < 1:
        raise ValueError("dirichlet_search needs at least one expert and one evaluation")
    rng = np.random.default_rng(seed)
    scored = Budgeted(objective, budget)
    scored(tuple(round(1.0 / n_experts, 4) for _ in range(n_experts)))
    draws = 0
    while not scored.exhausted and draws < 100 * budget:       # bounded: duplicates are free
        draws += 1
        scored(tuple(round(float(w), 4) for w in rng.dirichlet([alpha] * n_experts)))
    return _result(f"Dirichlet weights (alpha {alpha:g})", scored)


def exhaustive(experts: Sequence[str], objective: Callable[[frozenset], float]) -> SearchResult:
    """Every non-empty subset, smallest first (the reference the searches are measured against)."""
    from itertools import combinations

    scored = Budgeted(objective)
    for size in range(1, len(experts) + 1):
        for subset in combinations(experts, size):
            scored(frozenset(subset))
    return _result("exhaustive", scored)


def evaluations_to_reach(result: SearchResult, target: float) -> int | None:
    """How many evaluations the search spent before its best was within reach of `target`."""
    for spent, best, _ in result.curve:
        if best >= target:
            return spent
    return None
