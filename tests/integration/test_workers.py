"""``hita serve --workers 2`` in a subprocess: two processes hold the port, both
answer, the scheduled refresh runs once per slot across them, and Ctrl-C (SIGINT
to the process group) or SIGTERM (to the supervisor) stops them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Final

import pytest

from tests.integration.test_entrypoint import get_health
from tests.integration.test_health import closed_port

pytestmark = pytest.mark.slow

START_BUDGET_S = 60.0
REFRESH_INTERVAL_S = 0.4
REQUESTS = 60
REQUEST_LINE = re.compile(r" w(\d) hita\.access \[[^]]*\] GET /v1\.0/health 200 ")
REFRESH_LINE = re.compile(
    r" w(\d) hita\.services\.refresh \[[^]]*\] stats refreshed .*\(slot (\d+)\)"
)


def listening_pids(port: int) -> set[int]:
    """PIDs of the processes with a listening TCP socket on ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            pids.add(int(proc.name))
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


# "started with SIGINT ignored": as a shell without job control starts a
# background command (``hita serve --workers 2 &`` in a script, or a CI step run
# so); Ctrl-C to the group must stop it all the same (the supervisor exited 1).
IGNORING_SIGINT: Final = ("sh", "-c", 'trap "" INT; exec "$0" "$@"')


@pytest.mark.parametrize(
    ("stop", "launcher"),
    [("ctrl-c", ()), ("sigterm", ()), ("ctrl-c", IGNORING_SIGINT)],
    ids=["ctrl-c", "sigterm", "ctrl-c, started with SIGINT ignored"],
)
def test_two_workers_share_the_port_and_the_refresh_and_stop_together(
    clean_database: str, clean_redis: str, tmp_path: Path, stop: str, launcher: tuple[str, ...]
) -> None:
    port = closed_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))},
        "HITA_ENV": "test",
        "DATABASE_URL": clean_database,
        "REDIS_URL": clean_redis,
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
        "STATS_REFRESH_ENABLED": "true",
        "STATS_REFRESH_INTERVAL_S": str(REFRESH_INTERVAL_S),
        "DB_AUTO_MIGRATE": "false",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*launcher, sys.executable, "-m", "hita", "serve", "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    workers: set[int] = set()
    try:
        started = time.monotonic()
        while time.monotonic() - started < START_BUDGET_S and proc.poll() is None:
            workers = listening_pids(port)
            if len(workers) == 2 and get_health(port) is not None:
                break
            time.sleep(0.2)
        assert len(workers) == 2, "two processes hold the port"
        assert proc.pid not in workers  # the supervisor serves nothing itself
        for _ in range(REQUESTS):  # a new connection each time: the kernel picks a worker
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1.0/health", timeout=5) as r:
                assert r.status == 200
        time.sleep(REFRESH_INTERVAL_S * 8)  # several refresh slots go by

        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log_path.read_text()
    assert "Traceback" not in output, output
    assert "with 2 workers" in output
    answered = Counter(m.group(1) for m in REQUEST_LINE.finditer(output))
    assert set(answered) == {"1", "2"}, answered  # both answer
    assert sum(answered.values()) >= REQUESTS
    slots = [int(m.group(2)) for m in REFRESH_LINE.finditer(output)]
    assert len(slots) >= 4, output
    assert len(slots) == len(set(slots))  # one refresh per slot, across the workers
    assert not [pid for pid in workers if alive(pid)]  # every worker stopped
    assert listening_pids(port) == set()
