"""The command line's console: one line per finished stage with its time, a live tqdm bar for
the running stage with its long tasks beside it (training loss, items/s, eval items done), and
the libraries' own chatter turned down at its source.

The bar redraws in place (carriage returns, no new lines), also when the output is a pipe or a
file, and at least every `heartbeat` seconds, so a person watching a log sees it move during a
long step while the log itself stays a few dozen lines. Events come from `mm_assets.progress`,
in this process or from the run workers through `worker_channel`.
"""

from __future__ import annotations

import logging
import os
import queue as queue_lib
import sys
import threading
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from mm_assets import progress

# Loggers that print INFO a person running the demo does not need (the run logs keep the
# detail): MLflow's store creation and database migrations, the HTTP clients.
CHATTY_LOGGERS = ("mlflow", "alembic", "urllib3", "httpx", "botocore", "filelock", "faiss")


def quiet_libraries() -> None:
    """Turn the libraries' progress bars and INFO chatter off for this process and the
    processes it starts (environment), leaving warnings and errors alone."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")     # also transformers' loading bars
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")     # mlflow sets its loggers' level at import
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if "transformers" in sys.modules:            # imported before the environment was set
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def _seconds(s: float) -> str:
    if s < 59.95:
        return f"{s:.1f} s"
    whole = round(s)            # round first: 179.6 s is "3 min 00 s", not "2 min 60 s"
    return f"{whole // 60} min {whole % 60:02d} s"


def _count(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


@dataclass
class _Task:
    name: str
    total: float | None
    unit: str
    started: float = field(default_factory=time.perf_counter)
    done: float = 0.0
    fields: dict = field(default_factory=dict)

    def text(self) -> str:
        out = f"{self.name} {_count(self.done)}" + (f"/{_count(self.total)}" if self.total else "") + f" {self.unit}"
        elapsed = time.perf_counter() - self.started
        if self.unit in ("items", "samples", "tokens") and elapsed > 1 and self.done:
            out += f" {self.done / elapsed:,.0f}/s"
        for k, v in self.fields.items():
            out += f" {k} {v:.3g}" if isinstance(v, float) else f" {k} {v}"
        return out


@dataclass
class _Stage:
    name: str
    total: float | None
    unit: str
    bar: tqdm
    started: float = field(default_factory=time.perf_counter)


class StageConsole:
    """The listener of `mm_assets.progress` events for a command line run."""

    def __init__(self, stream=None, heartbeat: float = 2.0, width: int = 200):
        self.stream = stream or sys.stderr
        self.width = width
        self.lines = 0                    # permanent lines written (stages finished, notes)
        self._drawn = 0.0
        self._lock = threading.RLock()
        self._stages: dict[tuple, _Stage] = {}
        self._tasks: dict[tuple, _Task] = {}
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(heartbeat,), daemon=True, name="console")
        self._ticker.start()

    def __enter__(self) -> StageConsole:
        progress.listen(self)
        return self

    def __exit__(self, *exc) -> None:
        progress.listen(None)
        self._stop.set()
        self._ticker.join()
        with self._lock:
            for stage in self._stages.values():
                stage.bar.close()
            self._stages.clear()

    def note(self, text: str) -> None:
        """A permanent line above the live bar."""
        with self._lock:
            tqdm.write(text, file=self.stream)
            self.lines += text.count("\n") + 1

    def __call__(self, event: tuple) -> None:
        kind, key = event[0], event[1]
        with self._lock:
            if kind == "note":
                self.note(event[2])
            elif kind == "stage":
                _, _, name, total, unit = event
                fmt = ("{desc}  {n_fmt}/{total_fmt} " + unit + " |{bar:10}| {elapsed}{postfix}") if total \
                    else ("{desc}  {elapsed}{postfix}")
                bar = tqdm(total=total, desc=name, file=self.stream, leave=False, mininterval=1.0, bar_format=fmt,
                           **({"dynamic_ncols": True} if self.stream.isatty() else {"ncols": self.width}))
                self._stages[key] = _Stage(name, total, unit, bar)
            elif kind == "task":
                _, _, name, total, unit = event
                self._tasks[key] = _Task(name, total, unit)
                self._show_tasks()
            elif kind == "advance":
                _, _, n, fields = event
                if key in self._stages:
                    self._stages[key].bar.update(n)
                elif key in self._tasks:
                    self._tasks[key].done += n
                    self._tasks[key].fields.update(fields)
                    self._show_tasks(every=1.0)
            elif kind == "set":
                _, _, done, total, fields = event
                if key in self._tasks:
                    t = self._tasks[key]
                    t.done, t.total = done, total if total is not None else t.total
                    t.fields.update(fields)
                    self._show_tasks(every=1.0)
            elif kind == "end":
                if key in self._stages:
                    self._finish(self._stages.pop(key))
                self._tasks.pop(key, None)
                self._show_tasks()

    def _finish(self, stage: _Stage) -> None:
        done = stage.bar.n
        stage.bar.close()
        count = (f"{_count(done)}/{_count(stage.total)} {stage.unit}" if stage.total
                 else f"{_count(done)} {stage.unit}" if stage.unit else "")
        self.note(f"✓ {stage.name:<36} {count:<22} {_seconds(time.perf_counter() - stage.started):>10}")

    def _show_tasks(self, every: float = 0.0) -> None:
        """Redraw the live bar with the running tasks (if `every` seconds have passed)."""
        if not self._stages or time.perf_counter() - self._drawn < every:
            return
        bar = list(self._stages.values())[-1].bar
        text = " · ".join(t.text() for t in self._tasks.values())
        bar.set_postfix_str(text, refresh=True)      # tqdm shows it after ", "
        self._drawn = time.perf_counter()

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            with self._lock:
                self._show_tasks()


@dataclass
class WorkerChannel:
    """Progress from run worker processes: they put events on `queue` (see `listen_in_worker`),
    a thread here hands them to this process's listener."""

    queue: object
    thread: threading.Thread

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


def worker_channel(mp_context) -> WorkerChannel | None:
    """A queue the workers report into, drained into this process's listener; None when
    nobody listens here."""
    if not progress.listening():
        return None
    q = mp_context.Queue()

    def drain() -> None:
        while True:
            try:
                event = q.get(timeout=1.0)
            except queue_lib.Empty:
                continue
            if event is None:
                return
            progress.emit(event)

    thread = threading.Thread(target=drain, daemon=True, name="worker-progress")
    thread.start()
    return WorkerChannel(q, thread)


def listen_in_worker(q) -> None:
    """In a run worker: report progress into the parent's queue."""
    if q is not None:
        progress.listen(q.put)
        quiet_libraries()
