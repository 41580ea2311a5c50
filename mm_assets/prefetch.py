"""An order-preserving map that runs a bounded number of items ahead of its consumer (no Dagster import).

`prefetch_map(fn, items, workers=w, ahead=a)` yields ``fn(item)`` in the order of `items` while
`w` workers compute up to ``w + a`` results ahead of the consumer. The bound is what lets the
workers and the consumer share the cores: when the consumer (a model's forward pass) is the
slower side, the workers block on the full window instead of taking its CPU; when they are the
slower side, they use every cycle the consumer leaves idle.

Workers are threads, or forked processes with ``processes=True`` (for a `fn` that holds the GIL;
`fn`, its items and results must then pickle). ``workers=0`` calls `fn` inline, one item at a
time — the sequential reference the pipelined results must equal.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _executor(workers: int, processes: bool, name: str) -> Executor:
    if processes:
        # fork, as torch's DataLoader does: the children only decode, never run torch's thread pools
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int = 2,
                 processes: bool = False, name: str = "prefetch") -> Iterator[R]:
    """``fn(item)`` for each item, in input order, computed by `workers` workers at most
    ``workers + ahead`` items ahead of the consumer. An exception in `fn` is raised at its item;
    closing the iterator early cancels the work not yet started."""
    if workers <= 0:
        for item in items:
            yield fn(item)
        return
    window = workers + max(0, ahead)
    pool = _executor(workers, processes, name)
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
