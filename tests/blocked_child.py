"""Run a Python script in a child process until it blocks (it writes the marker file whose path
it is given as its third argument, then sleeps), and SIGKILL it there: how the generation tests
kill a process with a batch in flight."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def kill_when_blocked(tmp_path: Path, source: str, *args: str, timeout: float = 120) -> None:
    """`source` runs as `child.py records cache_root marker *args`-style: its argv is
    `args[:2] + [marker] + args[2:]`; killed once the marker exists."""
    (tmp_path / "child.py").write_text(source)
    marker = tmp_path / "blocked"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), *args[:2], str(marker), *args[2:]],
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the child ended early: {proc.stdout.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the child never reached the blocking batch"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
