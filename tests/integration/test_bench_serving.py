"""The four servers of scripts/bench_serving.py: each answers hello world as
the bench_http ceiling does, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from bench_serving import WAYS, Figures, pair, record
from harness import procs
from harness.ports import free_port
from harness.waits import wait_up

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_serving.py"


@pytest.mark.parametrize("index", range(len(WAYS)), ids=[w.label for w in WAYS])
def test_each_way_serves_the_ceilings_hello_world_and_stops_on_sigterm(
    index: int, tmp_path: Path
) -> None:
    port = free_port()
    argv = [sys.executable, str(SCRIPT), "--serve", str(index), str(port)]
    child = procs.start(argv, os.environ, tmp_path / "server.log")
    try:
        url = f"http://127.0.0.1:{port}/hello"
        wait_up(url, child=child, timeout_s=20)
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            assert json.load(response) == {"success": True, "message": "hello, world"}
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) == 0, (tmp_path / "server.log").read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_run_is_divided_by_the_plain_runs_on_either_side() -> None:
    figures = Figures()
    ceiling = pair((20_000.0, 50.0, 0), (30_000.0, 40.0, 1))
    assert ceiling == (25_000.0, 45.0)
    record(figures, (20_000.0, 60.0, 2), ceiling)
    assert figures.rps == [20_000.0]
    assert figures.x_rps == [0.8]
    assert figures.x_cpu == [0.75]
    assert figures.errors == 2
