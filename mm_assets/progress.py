"""Progress of long work, told to whoever listens: the command line's console (see
`mm_assets.console`), in this process or — through a queue — from the run workers.

Two levels: a *stage* is a step of a whole command (ingest 8 domains, train 6 runs), counted in
the units it is made of; a *task* is the long work inside one of them (embedder training steps
with their loss, items embedded, eval items answered). Without a listener (tests, `dagster dev`,
library use) every call is a no-op, so algorithms and assets may report unconditionally; the
Dagster run logs keep their own detail either way.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

Event = tuple
_listener: Callable[[Event], None] | None = None
_ids = itertools.count()


def listen(listener: Callable[[Event], None] | None) -> None:
    """Send this process's progress events to `listener` (None: stop)."""
    global _listener
    _listener = listener


def listening() -> bool:
    return _listener is not None


def emit(event: Event) -> None:
    """Hand an event to this process's listener (the workers' events arrive through here)."""
    if _listener is not None:
        _listener(event)


def note(text: str) -> None:
    """A line for the person running the command (printed when nobody listens)."""
    if _listener is None:
        print(text)
    else:
        emit(("note", None, text))


class Progress:
    """What a stage or task reports: units done (`advance`) and fields to show (`loss=…`)."""

    def __init__(self, key: tuple | None):
        self.key = key

    def advance(self, n: float = 1, **fields) -> None:
        if self.key is not None:
            emit(("advance", self.key, n, fields))

    def set(self, done: float, total: float | None = None, **fields) -> None:
        if self.key is not None:
            emit(("set", self.key, done, total, fields))


@contextmanager
def _reported(kind: str, name: str, total: float | None, unit: str) -> Iterator[Progress]:
    if _listener is None:
        yield Progress(None)
        return
    key = (os.getpid(), next(_ids))
    emit((kind, key, name, total, unit))
    try:
        yield Progress(key)
    finally:
        emit(("end", key))


def stage(name: str, total: float | None = None, unit: str = "") -> AbstractContextManager[Progress]:
    """A step of a command; the console keeps one line per stage with its time."""
    return _reported("stage", name, total, unit)


def task(name: str, total: float | None = None, unit: str = "items") -> AbstractContextManager[Progress]:
    """Long work inside a stage, shown beside it while it runs."""
    return _reported("task", name, total, unit)
