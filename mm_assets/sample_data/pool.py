"""A process pool that also runs in process, and shuts down without hanging."""

from __future__ import annotations

import multiprocessing as mp
from contextlib import contextmanager


class _Inline:
    """Pool stand-in that runs everything in this process (workers=1)."""

    class _Done:
        def __init__(self, value):
            self._value = value

        def get(self):
            return self._value

    def apply_async(self, fn, args):
        return self._Done(fn(*args))

    def imap(self, fn, items):
        return map(fn, items)


@contextmanager
def process_pool(workers: int):
    """A spawn pool of `workers` processes, or an in-process stand-in for one worker."""
    if workers <= 1:
        yield _Inline()
        return
    # spawn: safe when the caller has threads (Dagster, pytest plugins)
    pool = mp.get_context("spawn").Pool(workers)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        raise
    # close + join, not `with Pool` (terminate): terminate signals idle workers with SIGTERM, and
    # where SIGTERM is ignored (inherited from a background job) a worker blocked on the task
    # queue's lock never exits and the join hangs — seen in the test suite
    pool.close()
    pool.join()
