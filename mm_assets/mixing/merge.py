"""Linear merges of checkpoints ("model soups"), as plain functions (no Dagster).

A soup of experts with weights w is Σ w_i θ_i for every tensor that training changes; every
other tensor — integer buffers, and tensors frozen in training (the vision tower) — must be
identical in every expert and is copied verbatim (a difference is an error naming the tensor and
the expert). Every key of the inputs is in the output: mergekit once dropped a VLM's vision
tensors without a word, and a soup evaluated without its tower would score as noise.

Exact sums. A uniform soup is the exact sum of its members' tensors, rounded once to float64,
divided by the member count and rounded to the tensor's dtype; a weighted soup is the exact sum
of w_i θ_i (each weight rounded to float32, so each product is exact in float64) rounded to the
dtype. Sums are accumulated in float64 and every addition is checked to be exact (its TwoSum
error is zero); a tensor whose float64 sum is not exact (summands more than ~26 binary orders of
magnitude apart, which trained weights do not produce) is summed again in double-double
arithmetic, exact to ~100 binary orders. So the bytes of a soup depend on its members and weights
only, not on how it was reached: the Gray-code walk below, which adds or removes one expert per
soup to a running sum, gives the same bytes as merging the subset from scratch (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

State = Mapping[str, torch.Tensor]
Loader = Callable[[int], State]          # expert index -> its tensors (e.g. a safetensors file)


class MergeError(ValueError):
    """Experts that cannot be merged; the message names the tensor and the expert."""


@dataclass(frozen=True)
class MergePlan:
    """What a soup does with each tensor of the experts, from the first expert's tensors."""
    averaged: dict[str, tuple[tuple[int, ...], torch.dtype]]   # merged: key -> (shape, dtype)
    verbatim: dict[str, torch.Tensor]                           # copied: frozen or non-float tensors

    @property
    def keys(self) -> set[str]:
        return set(self.averaged) | set(self.verbatim)

    def check(self, state: State, expert: str) -> None:
        """`state` has exactly the plan's keys, the same shapes and dtypes, and the verbatim
        tensors' values; raises MergeError naming the first difference."""
        missing, extra = self.keys - set(state), set(state) - self.keys
        if missing or extra:
            raise MergeError(f"expert {expert}: tensor keys differ from the first expert's: missing "
                             f"{sorted(missing)[:5]}, extra {sorted(extra)[:5]}")
        for key, (shape, dtype) in self.averaged.items():
            t = state[key]
            if tuple(t.shape) != shape or t.dtype != dtype:
                raise MergeError(f"expert {expert}: tensor {key} is {t.dtype}{list(t.shape)}, "
                                 f"the first expert's {dtype}{list(shape)}")
        for key, ref in self.verbatim.items():
            t = state[key]
            if t.shape != ref.shape or t.dtype != ref.dtype or not torch.equal(t, ref):
                raise MergeError(f"expert {expert}: tensor {key} is frozen or not floating point, so it must be "
                                 "identical in every expert, and it differs from the first expert's")


def merge_plan(first: State, frozen: Callable[[str], bool] = lambda _key: False) -> MergePlan:
    """Floating-point tensors that are not `frozen` are averaged; the rest is copied verbatim."""
    averaged, verbatim = {}, {}
    for key, t in first.items():
        if t.is_floating_point() and not frozen(key):
            averaged[key] = (tuple(t.shape), t.dtype)
        else:
            verbatim[key] = t.detach().clone()
    return MergePlan(averaged, verbatim)


# ----------------------------------------------------------------------------- exact sums


def _two_sum(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s = fl(a + b) and the rounding error e, with a + b = s + e exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _add_exactly(sums: dict[str, torch.Tensor], inexact: set[str], key: str, x: torch.Tensor) -> None:
    """sums[key] += x in float64; `key` goes into `inexact` when the addition rounded."""
    sums[key], e = _two_sum(sums[key], x)
    if e.any():
        inexact.add(key)


def _double_double_sum(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """fl64 of the exact sum of float64 tensors, accumulated in double-double (renormalised after
    each term): exact while the sum fits in ~106 bits."""
    hi = lo = None
    for t in terms:
        if hi is None:
            hi, lo = t.clone(), torch.zeros_like(t)
            continue
        hi, e = _two_sum(hi, t)
        lo = lo + e
        hi, lo = hi + lo, lo - ((hi + lo) - hi)          # fast two-sum: |hi| >= |lo|
    return hi + lo


def _term(state: State, key: str, weight: float | None) -> torch.Tensor:
    x = state[key].to(torch.float64)
    # a float32 weight times a float32 (or narrower) value is exact in float64
    return x if weight is None else x * float(torch.tensor(weight, dtype=torch.float32))


def _finish(total: torch.Tensor, divisor: int, dtype: torch.dtype) -> torch.Tensor:
    return (total / divisor if divisor != 1 else total).to(dtype)


def _resum(plan: MergePlan, load: Loader, members: Sequence[int], keys: Iterable[str],
           weights: Mapping[int, float] | None) -> dict[str, torch.Tensor]:
    """The exact sums of `keys` over `members`, in double-double (the members read once)."""
    keys = list(keys)
    if not keys:
        return {}
    states = {i: load(i) for i in members}
    return {key: _double_double_sum(_term(states[i], key, None if weights is None else weights[i]) for i in members)
            for key in keys}


def merge_from_scratch(plan: MergePlan, load: Loader, members: Iterable[int],
                       weights: Mapping[int, float] | None = None) -> dict[str, torch.Tensor]:
    """The soup of `members`: their uniform mean, or Σ weights[i] θ_i when `weights` is given.
    Each member is read once and checked against the plan."""
    members = sorted(set(members))
    if not members:
        raise MergeError("a soup needs at least one expert")
    sums = {k: torch.zeros(shape, dtype=torch.float64) for k, (shape, _) in plan.averaged.items()}
    inexact: set[str] = set()
    for i in members:
        state = load(i)
        plan.check(state, str(i))
        for key in sums:
            _add_exactly(sums, inexact, key, _term(state, key, None if weights is None else weights[i]))
    sums.update(_resum(plan, load, members, inexact, weights))
    out = {k: v.clone() for k, v in plan.verbatim.items()}
    divisor = 1 if weights is not None else len(members)
    for key, (_, dtype) in plan.averaged.items():
        out[key] = _finish(sums[key], divisor, dtype)
    return out


class RunningSoup:
    """The uniform soup of a changing set of experts: `add` and `remove` one expert at a time
    (one expert's tensors read per change), `soup()` the mean of the current members. Holds one
    float64 sum of the averaged tensors. A tensor whose running sum stopped being exact is summed
    from scratch over the members when a soup is taken (so the bytes equal `merge_from_scratch`)."""

    def __init__(self, plan: MergePlan, load: Loader):
        self.plan, self.load = plan, load
        self.members: set[int] = set()
        self._sum = {k: torch.zeros(shape, dtype=torch.float64) for k, (shape, _) in plan.averaged.items()}
        self._inexact: set[str] = set()
        self._checked: set[int] = set()

    def _change(self, i: int, sign: float) -> None:
        state = self.load(i)
        if i not in self._checked:
            self.plan.check(state, str(i))
            self._checked.add(i)
        for key in self._sum:
            x = state[key].to(torch.float64)
            _add_exactly(self._sum, self._inexact, key, x if sign > 0 else -x)

    def add(self, i: int) -> None:
        if i in self.members:
            raise MergeError(f"expert {i} is already in the soup")
        self._change(i, 1.0)
        self.members.add(i)

    def remove(self, i: int) -> None:
        if i not in self.members:
            raise MergeError(f"expert {i} is not in the soup")
        self._change(i, -1.0)
        self.members.discard(i)
        if not self.members:              # empty again: exact zeros, whatever happened before
            self._sum = {k: torch.zeros_like(v) for k, v in self._sum.items()}
            self._inexact.clear()

    def soup(self) -> dict[str, torch.Tensor]:
        if not self.members:
            raise MergeError("a soup needs at least one expert")
        out = {k: v.clone() for k, v in self.plan.verbatim.items()}
        resummed = _resum(self.plan, self.load, sorted(self.members), sorted(self._inexact), None)
        for key, (_, dtype) in self.plan.averaged.items():
            out[key] = _finish(resummed.get(key, self._sum[key]), len(self.members), dtype)
        return out


# ----------------------------------------------------------------------------- subsets


def gray_code_subsets(k: int) -> Iterator[tuple[int, bool, frozenset[int]]]:
    """The 2^k - 1 non-empty subsets of range(k) in reflected Gray-code order, each one expert
    away from the one before: (that expert, whether it was added, the subset)."""
    previous = 0
    for n in range(1, 2 ** k):
        code = n ^ (n >> 1)
        changed = (code ^ previous).bit_length() - 1
        previous = code
        yield changed, bool(code >> changed & 1), frozenset(i for i in range(k) if code >> i & 1)


def soups_in_gray_order(plan: MergePlan, load: Loader, k: int) -> Iterator[tuple[frozenset[int], dict]]:
    """Every uniform soup of k experts, one expert added or removed per soup (running sum)."""
    running = RunningSoup(plan, load)
    for expert, added, subset in gray_code_subsets(k):
        (running.add if added else running.remove)(expert)
        yield subset, running.soup()
