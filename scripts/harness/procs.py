"""Child processes a script owns by PID: started with their output in a log
file, stopped with a signal, killed if they do not stop in time."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

STOP_TIMEOUT_S: Final = 30.0


def start(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    group: bool = False,
) -> subprocess.Popen[bytes]:
    """``argv`` with stdout and stderr appended to ``log_path``; ``group``: in
    its own process group (``stop`` then signals the whole group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=group,
        )


def _send(child: subprocess.Popen[bytes], signum: int, group: bool) -> None:
    if group:
        os.killpg(child.pid, signum)
    else:
        child.send_signal(signum)


def stop(
    child: subprocess.Popen[bytes],
    signum: int = signal.SIGTERM,
    *,
    group: bool = False,
    timeout_s: float = STOP_TIMEOUT_S,
) -> None:
    """Send ``signum`` and wait; SIGKILL if it has not exited after ``timeout_s``."""
    if child.poll() is not None:
        return
    _send(child, signum, group)
    try:
        child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _send(child, signal.SIGKILL, group)
        child.wait()


@contextmanager
def running(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    stop_signal: int = signal.SIGTERM,
    cwd: Path | None = None,
    group: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """A child for the length of the block, stopped (or killed) on the way out."""
    child = start(argv, env, log_path, cwd=cwd, group=group)
    try:
        yield child
    finally:
        stop(child, stop_signal, group=group)


def pinned(argv: Sequence[str], cpus: str) -> list[str]:
    """``argv`` under ``taskset -c cpus`` on a machine with 2 CPUs or more."""
    return ["taskset", "-c", cpus, *argv] if (os.cpu_count() or 1) >= 2 else list(argv)
