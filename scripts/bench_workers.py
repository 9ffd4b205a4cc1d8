"""Throughput of ``hita serve --workers N`` for N = 1 and 2, with wrk.

For each N the service runs as ``hita serve --workers N`` under ``taskset``
(CPUs ``--server-cpus``), and wrk (``--wrk-cpus``) drives one cached,
authenticated read, ``GET /v1.0/user/{id}`` (a token check and the user's
details, both from Redis), over ``--connections`` keep-alive connections for
``--duration`` seconds. Each run is paired with a hello-world aiohttp app
served the same way (same N, same CPUs, same wrk): the ceiling of this machine
and harness, so the service's figure can be read as a fraction of it.

PostgreSQL and Redis are private embedded servers (or ``DATABASE_URL`` /
``REDIS_URL``), unpinned. The figures go to ``docs/benchmarks.md`` (the
section between the ``bench_workers`` markers) with the command used.

    python scripts/bench_workers.py [--duration 10] [--connections 32] [--rounds 3]
        [--server-cpus 0,1] [--wrk-cpus 1] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from aiohttp import web

from hita.config import PROJECT_ROOT, load_config
from hita.embedded import embedded_dependencies

from harness import procs, wrk
from harness.ports import free_port
from harness.reports import BENCHMARKS, command_line, write_marked
from harness.reports import facts as run_facts
from harness.waits import wait_up

BEGIN: Final = "<!-- bench_workers: begin -->"
END: Final = "<!-- bench_workers: end -->"
START_BUDGET_S: Final = 60.0
PASSWORD: Final = "bench password 1234"
WORKER_COUNTS: Final = (1, 2)


@dataclasses.dataclass(frozen=True)
class Run:
    app: str
    workers: int
    requests_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    errors: int


@contextmanager
def serving(argv: list[str], env: dict[str, str], cpus: str, url: str) -> Iterator[None]:
    """``argv`` on ``cpus``, in its own process group (the workers too), until the block ends."""
    child = procs.start(procs.pinned(argv, cpus), env, Path(os.devnull), group=True)
    try:
        wait_up(url, child=child, timeout_s=START_BUDGET_S)
        yield
    finally:
        procs.stop(child, signal.SIGINT, group=True)


def load(
    url: str, args: argparse.Namespace, headers: dict[str, str]
) -> tuple[float, float, float, int]:
    """Requests/s, p50 and p99 latency (ms), and errors (non-2xx, socket errors)."""
    argv = wrk.command(
        url,
        connections=args.connections,
        seconds=args.duration,
        headers=[f"{k}: {v}" for k, v in headers.items()],
    )
    out = wrk.run(procs.pinned(argv, args.wrk_cpus))
    return (
        wrk.requests_per_s(out),
        wrk.latency_ms(out, "50%"),
        wrk.latency_ms(out, "99%"),
        wrk.errors(out),
    )


# -- the hello-world ceiling ------------------------------------------------------


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"success": True})


def _hello_worker(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", _hello)
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=True, print=None, access_log=None)


def hello_server(port: int, workers: int) -> None:
    """N hello-world processes on one port, as ``hita serve --workers N`` runs."""
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_hello_worker, args=(port,)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.join(10)


# -- the service -------------------------------------------------------------------


def make_account(env: dict[str, str]) -> str:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hita",
            "user",
            "create",
            "--username",
            "bench.admin",
            "--email",
            "bench.admin@hotel.example",
            "--role",
            "admin",
            "--password",
            "-",
        ],
        input=PASSWORD,
        env=env,
        text=True,
        capture_output=True,
        check=False,  # already there on a second run
    )
    return "bench.admin"


def login(base: str, username: str) -> tuple[str, str]:
    request = urllib.request.Request(
        f"{base}/v1.0/auth/login",
        data=json.dumps({"username": username, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        token = json.loads(r.read())["access_token"]
    me = urllib.request.Request(f"{base}/v1.0/user/list?search={username}")
    me.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(me, timeout=30) as r:
        user_id = json.loads(r.read())["users"][0]["id"]
    return token, str(user_id)


def measure_once(
    args: argparse.Namespace, env: dict[str, str], username: str, workers: int
) -> list[Run]:
    """One wrk run of the service and one of the hello-world app, with N workers."""
    runs = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "hita", "serve", "--workers", str(workers)]
    health = f"{base}/v1.0/health"
    with serving(argv, {**env, "PORT": str(port)}, args.server_cpus, health):
        token, user_id = login(base, username)
        url = f"{base}/v1.0/user/{user_id}"
        headers = {"Authorization": f"Bearer {token}"}
        load(url, argparse.Namespace(**{**vars(args), "duration": 2}), headers)  # warm
        runs.append(Run("HITA cached read", workers, *load(url, args, headers)))
    port = free_port()
    argv = [sys.executable, __file__, "--hello-server", str(port), str(workers)]
    with serving(argv, env, args.server_cpus, f"http://127.0.0.1:{port}/"):
        runs.append(Run("hello world", workers, *load(f"http://127.0.0.1:{port}/", args, {})))
    return runs


def measure(args: argparse.Namespace) -> tuple[list[Run], dict[str, str]]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-workers-", dir=PROJECT_ROOT / ".hita"))
    environ = {**os.environ, "HITA_DATA_DIR": str(data_dir), "HITA_ENV": "development"}
    config = load_config(environ)
    runs: list[Run] = []
    load_before = os.getloadavg()  # other work on the machine skews every figure
    try:
        with embedded_dependencies(config) as resolved:
            env = {
                **environ,
                "DATABASE_URL": resolved.database.url or "",
                "LOG_LEVEL": "WARNING",
                "WARMUP_ON_START": "false",
            }
            if resolved.redis.url:
                env["REDIS_URL"] = resolved.redis.url
            username = make_account(env)
            for _ in range(args.rounds):  # interleaved, so a busy spell hits both counts
                for workers in WORKER_COUNTS:
                    runs += measure_once(args, env, username, workers)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    facts = {
        **run_facts(),
        "wrk": f"1 thread, {args.connections} connections, {args.duration} s, CPUs {args.wrk_cpus}",
        "rounds": str(args.rounds),
        "server": f"CPUs {args.server_cpus}",
        "load average before (1, 5, 15 min)": ", ".join(f"{x:.1f}" for x in load_before),
    }
    return runs, facts


def report(runs: list[Run], facts: dict[str, str], command: str, *, busy: bool) -> str:
    lines = [
        BEGIN,
        "## Workers: throughput with `hita serve --workers 1` and `2`",
        "",
        "Written by `scripts/bench_workers.py` (`make bench-workers`); rerun it to refresh.",
        "",
        f"Command: `{command}`",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        "Medians over the rounds; every run is listed below them.",
        "",
        "| app | workers | requests/s (median) | range | p50 (ms) | p99 (ms) | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by: dict[tuple[str, int], float] = {}
    for app in ("HITA cached read", "hello world"):
        for workers in WORKER_COUNTS:
            mine = [r for r in runs if (r.app, r.workers) == (app, workers)]
            rates = [r.requests_per_s for r in mine]
            by[app, workers] = statistics.median(rates)
            lines.append(
                f"| {app} | {workers} | {by[app, workers]:,.0f} | "
                f"{min(rates):,.0f}-{max(rates):,.0f} | "
                f"{statistics.median(r.latency_p50_ms for r in mine):.2f} | "
                f"{statistics.median(r.latency_p99_ms for r in mine):.2f} | "
                f"{sum(r.errors for r in mine)} |"
            )
    lines += ["", "| round | app | workers | requests/s |", "| ---: | --- | ---: | ---: |"]
    per_round = 2 * len(WORKER_COUNTS)
    for i, run in enumerate(runs):
        lines.append(
            f"| {i // per_round + 1} | {run.app} | {run.workers} | {run.requests_per_s:,.0f} |"
        )
    lines += [
        "",
        "HITA's read is `GET /v1.0/user/{id}` with a bearer token: the token check and"
        " the details both come from Redis, so PostgreSQL is not on the path.",
        f"Two workers give {by[('HITA cached read', 2)] / by[('HITA cached read', 1)]:.2f}x"
        " one worker's throughput. The hello-world app, served the same way, is the"
        " ceiling of this harness (wrk on its CPU, the loopback, aiohttp itself): HITA"
        f" runs at {by[('HITA cached read', 1)] / by[('hello world', 1)]:.0%} of it with one"
        f" worker and {by[('HITA cached read', 2)] / by[('hello world', 2)]:.0%} with two,"
        " so its figures measure the service, not wrk. wrk, Redis and the workers share"
        " the machine's CPUs.",
    ]
    if busy:
        lines.append(
            "The load average above is higher than the CPU count: other work was running"
            " on the same CPUs, so these runs cannot tell the workers' effect from the"
            " machine's (see the spread between rounds). Rerun on a quiet machine before"
            ' drawing a conclusion; README "Scaling out" says how to choose N.'
        )
    lines += [
        END,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of 1 and 2")
    parser.add_argument("--server-cpus", default="0,1", help="taskset CPU list of the server")
    parser.add_argument("--wrk-cpus", default="1", help="taskset CPU list of wrk")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the docs")
    parser.add_argument("--hello-server", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hello_server:
        hello_server(*args.hello_server)
        return 0
    if not wrk.available("taskset"):
        return 2
    runs, facts = measure(args)
    command = command_line("bench_workers.py")
    busy = float(facts["load average before (1, 5, 15 min)"].split(",")[0]) > (os.cpu_count() or 1)
    text = report(runs, facts, command, busy=busy)
    print(text)
    if not args.no_write:
        write_marked(text, BEGIN, END, BENCHMARKS, "# Benchmarks\n")
        print(f"written to {BENCHMARKS.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
