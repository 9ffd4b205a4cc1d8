"""Benchmark HITA's serving loop against aiohttp's own, on hello world.

``make bench-http`` divides every row by an aiohttp hello world served by
``web.run_app``: asyncio reads each of its connections into a fresh 256 KiB
buffer. ``hita serve`` reads through ``hita.api.serving`` instead (one buffer
per process, ``asyncio.BufferedProtocol``), and pins glibc's mmap threshold
(``hita.malloc``), under which each of asyncio's fresh buffers is an ``mmap``,
a ``mremap`` and a ``munmap`` (docs/soak.md). This script serves the same
hello world four ways, each in a process of its own on the server CPU:
``web.run_app`` and HITA's loop, each with and without the pin. wrk
(``-t1 -c50``, on the other CPU) loads them in turn, round after round, and
every run of the three others sits between two runs of the plain
``web.run_app``: its ratios are to the mean of those two.

    python scripts/bench_serving.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web

from bench_http_peers import hello
from bench_http_world import LOAD_CPU, SERVER_CPU, cpu_seconds, pin_self
from harness import procs, wrk
from harness.bench import BENCH_ROOT
from harness.ports import free_port
from harness.reports import command_line, machine_facts, publish
from harness.waits import wait_up

HEADING: Final = "Serving loop: hello world, aiohttp's and HITA's (scripts/bench_serving.py)"
CONNECTIONS: Final = 50
HOST: Final = "127.0.0.1"


@dataclass(frozen=True)
class Way:
    label: str
    hita_loop: bool  # hita.api.serving.run, else web.run_app
    pinned: bool  # hita.malloc.pin_mmap_threshold() first


WAYS: Final = (
    Way("`web.run_app` (the `make bench-http` ceiling)", hita_loop=False, pinned=False),  # first
    Way("`web.run_app`, mmap threshold pinned", hita_loop=False, pinned=True),
    Way("HITA's loop (`hita.api.serving`)", hita_loop=True, pinned=False),
    Way("HITA's loop, mmap threshold pinned (as `hita serve`)", hita_loop=True, pinned=True),
)


def serve(way: Way, port: int) -> None:
    """Serve hello world at ``port`` the ``way`` given, until SIGTERM."""
    if way.pinned:
        from hita.malloc import pin_mmap_threshold  # noqa: PLC0415 - the server's side only

        if not pin_mmap_threshold():
            raise SystemExit("the mmap threshold could not be pinned here")
    app = web.Application()
    app.router.add_get("/hello", hello)
    if not way.hita_loop:
        web.run_app(app, host=HOST, port=port, access_log=None, print=None)
        return
    from hita.api import serving  # noqa: PLC0415
    from hita.cli.serve_cmd import bind  # noqa: PLC0415

    serving.run(app, bind(HOST, port), shutdown_timeout=1.0)


@dataclass
class Figures:
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    x_rps: list[float] = field(default_factory=list)  # / the plain runs on either side
    x_cpu: list[float] = field(default_factory=list)
    errors: int = 0


def measure(url: str, pid: int, seconds: float) -> tuple[float, float, int]:
    """req/s, server CPU µs per request, errors of one wrk run."""
    before = cpu_seconds(pid)
    argv = wrk.command(url, connections=CONNECTIONS, seconds=seconds)
    out = wrk.run(procs.pinned(argv, str(LOAD_CPU)))
    spent = cpu_seconds(pid) - before
    rps = wrk.requests_per_s(out)
    return rps, spent / (rps * seconds) * 1e6, wrk.errors(out)


def pair(before: tuple[float, float, int], after: tuple[float, float, int]) -> tuple[float, float]:
    """The plain way's req/s and CPU per request around a run: the mean of both."""
    return (before[0] + after[0]) / 2, (before[1] + after[1]) / 2


def record(f: Figures, run: tuple[float, float, int], ceiling: tuple[float, float]) -> None:
    """One run's figures, and its ratios to the plain way's runs on either side."""
    rps, cpu_us, errors = run
    f.rps.append(rps)
    f.cpu_us.append(cpu_us)
    f.x_rps.append(rps / ceiling[0])
    f.x_cpu.append(ceiling[1] / cpu_us)
    f.errors += errors


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument(
        "--reps", type=int, default=5, help="rounds; each runs the plain way between the others"
    )
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ alone")
    parser.add_argument("--serve", nargs=2, metavar=("WAY", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(WAYS[int(args.serve[0])], int(args.serve[1]))
        return 0
    if not wrk.available():
        return 2
    pin_self()
    logs = BENCH_ROOT / "serving"
    figures = {way.label: Figures() for way in WAYS}
    with_servers = []
    for index, way in enumerate(WAYS):
        port = free_port()
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(index), str(port)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = procs.start(procs.pinned(argv, SERVER_CPU), env, logs / f"way{index}.log")
        with_servers.append((way, f"http://{HOST}:{port}/hello", child))
    try:
        for _, url, child in with_servers:
            wait_up(url, child=child)
        plain_way, plain_url, plain_child = with_servers[0]
        plain = figures[plain_way.label]
        for rep in range(args.reps):
            before = measure(plain_url, plain_child.pid, args.seconds)
            record(plain, before, before[:2])
            for way, url, child in with_servers[1:]:
                run = measure(url, child.pid, args.seconds)
                after = measure(plain_url, plain_child.pid, args.seconds)
                record(plain, after, after[:2])
                ceiling = pair(before, after)
                record(figures[way.label], run, ceiling)
                print(
                    f"round {rep + 1}/{args.reps} {way.label}: {run[0]:,.0f} req/s,"
                    f" {run[1]:.1f} CPU µs/request ({ceiling[1]:.1f} plain)",
                    flush=True,
                )
                before = after
    finally:
        for _, _, child in with_servers:
            procs.stop(child)
    publish(HEADING, report(figures, args), write=not args.no_write)
    return 0


def report(figures: dict[str, Figures], args: argparse.Namespace) -> str:
    med = statistics.median
    rows = [
        f"| {label} | {med(f.rps):,.0f} | **{med(f.x_rps):.2f}** | {med(f.cpu_us):.1f}"
        f" | {med(f.x_cpu):.2f} | {', '.join(f'{c:.1f}' for c in f.cpu_us)} | {f.errors} |"
        for label, f in figures.items()
    ]
    return "\n".join(
        [
            f"Command: `{command_line('bench_serving.py')}`",
            "",
            *machine_facts(),
            f"- wrk -t1 -c{CONNECTIONS}, {args.seconds:g} s runs,"
            f" {args.reps} rounds, each way between two plain runs",
            "",
            "| hello world served by | req/s (median) | x `web.run_app` (paired)"
            " | server CPU µs per request | x `web.run_app` by CPU | CPU µs, each run | errors |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
            *rows,
            "",
            "Each way is a process of its own on the server CPU, serving the hello world",
            "of `make bench-http`'s ceiling (`scripts/bench_http_peers.py`). Every run of",
            "the three other ways sits between two runs of the plain `web.run_app`, and",
            "its ratios are to the mean of those two (as `make bench-http` pairs its rows",
            "with hello world); the plain row is every one of its runs, x 1.00 by",
            "definition. CPU per request is the process's user + system time",
            "(/proc/<pid>/stat) over the run divided by wrk's requests. The machine is",
            "shared: read the ratios.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
