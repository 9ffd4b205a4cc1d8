"""wrk, the HTTP load generator: its command line, a run, and its text output."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

INSTALL_HINT: Final = "apt-get install -y wrk"
_LATENCY_UNITS_MS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def available(*tools: str) -> bool:
    """Whether wrk (and any other ``tools``) is installed; if not, say how to get it."""
    missing = [t for t in ("wrk", *tools) if shutil.which(t) is None]
    if missing:
        print(f"needs {', '.join(missing)}: {INSTALL_HINT}", file=sys.stderr)
    return not missing


def command(
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    script: Path | None = None,
    headers: Sequence[str] = (),
    script_args: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """``wrk -t -c -d --latency [-s script] [-H header]... url [-- script args]``."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", *extra]
    if script is not None:
        argv += ["-s", str(script)]
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    return argv


def run(argv: Sequence[str]) -> str:
    """wrk's standard output; a failed run raises."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


def latency_ms(out: str, label: str) -> float:
    """A line of the ``--latency`` distribution (``label``: ``50%``, ``99%``), in ms."""
    m = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if m is None:
        raise ValueError(f"no {label} latency in wrk's output:\n{out}")
    return float(m.group(1)) * _LATENCY_UNITS_MS[m.group(2)]


def requests_per_s(out: str) -> float:
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise ValueError(f"no Requests/sec in wrk's output:\n{out}")
    return float(m.group(1))


def errors(out: str) -> int:
    """Non-2xx/3xx answers and socket errors."""
    found = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        found += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        found += sum(int(g) for g in m.groups())
    return found
