"""Temporary files and directories that a killed process does not leak.

A SIGKILLed run never reaches its `finally`: its half-written `.tmp-*` files and its scratch
directories stay behind. Each temporary name therefore carries its owner — a short hash of the
host name and the process id — and the next writer in the same place removes those whose owner
process is gone. Only this host's dead processes are swept: a store shared between machines
(NFS) also holds other hosts' live temporaries, whose process ids mean nothing here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def owner_tag() -> str:
    """`<host hash>-<pid>`: who made a temporary (computed per call: a fork has a new pid)."""
    return f"{_HOST}-{os.getpid()}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:     # alive, someone else's
        return False
    return False


def is_stale(name: str, prefix: str) -> bool:
    """True for a temporary `<prefix><host>-<pid>-…` left by a process of this host that is gone."""
    if not name.startswith(prefix):
        return False
    host, _, rest = name[len(prefix):].partition("-")
    pid, _, _ = rest.partition("-")
    return host == _HOST and pid.isdigit() and _process_gone(int(pid))


def sweep(directory: str, prefix: str) -> list[str]:
    """Remove the stale temporaries named `<prefix><owner>-…` directly in `directory`."""
    removed = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        if is_stale(name, prefix):
            path = os.path.join(directory, name)
            with contextlib.suppress(FileNotFoundError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
            removed.append(name)
    return removed


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[str]:
    """A temporary directory `<tmp>/<prefix><owner>-…`, removed on exit; first sweeps the ones
    that killed processes left under the same prefix."""
    sweep(tempfile.gettempdir(), prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{owner_tag()}-") as tmp:
        yield tmp


def spool_file(prefix: str) -> tempfile._TemporaryFileWrapper:
    """An open named temporary file (not deleted on close) under the same sweeping rule."""
    sweep(tempfile.gettempdir(), prefix)
    return tempfile.NamedTemporaryFile(prefix=f"{prefix}{owner_tag()}-", delete=False)
