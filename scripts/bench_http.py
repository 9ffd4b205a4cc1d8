"""Benchmark HTTP reads with wrk: HITA's cached routes against the aiohttp ceiling and peers.

One paired run on this machine:

- a private Redis and PostgreSQL (hita.embedded), ``--users`` seeded users;
- the server processes pinned to CPU 0 with ``taskset``; Redis, PostgreSQL,
  wrk and this script on CPU 1;
- a peers app (bench_http_peers.py): ``/hello`` (``web.json_response``, the
  ceiling), ``/get/{id}`` (one ``redis.asyncio`` GET + orjson), ``/aiocache/{id}``
  and ``/cashews/{id}`` (each library's decorated hit), no auth;
- HITA itself, ``hita serve`` in the production profile with an admin token:
  ``GET /v1.0/user/{id}`` cycling over every seeded id (a wrk Lua script),
  ``/v1.0/dashboard/stats`` and ``/v1.0/user/list?page=1``; one HITA process
  per ``CACHE_L1_ENABLED`` setting when this HITA has it;
- ``wrk -t1 -c50 -d<seconds>s``, ``--reps`` repetitions; every measured run sits
  between two hello-world runs and is reported divided by their mean; medians
  over the repetitions; p99 from wrk's latency distribution; Redis commands
  per request from INFO commandstats (CONFIG RESETSTAT before the run).

``--topology sentinel`` / ``--topology cluster`` (``make bench-http
TOPOLOGIES="sentinel cluster"``) add HITA with L1 on against that topology's
own Redis servers (a master, a replica and three sentinels; three primaries
and three replicas), measured on the user route beside the standalone one;
their Redis commands are counted on every data node, but for what the servers
run by themselves (PING, INFO, PUBLISH, REPLCONF).

``--profile SECONDS`` instead runs HITA under cProfile while wrk loads the warm
``GET /v1.0/user/{id}`` and writes the per-request cost by part
(bench_http_profile.py). The servers and the wrk runs: bench_http_world.py.

    python scripts/bench_http.py [--seconds 8] [--reps 3] [--users 10000]
    python scripts/bench_http.py --profile 20
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Final, cast

from redis import Redis as SyncRedis

from hita.config import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))  # tests.topologies: the Sentinel and Cluster servers

from bench_http_profile import run_profile
from bench_http_world import (
    CONNECTIONS,
    HELLO,
    SERVER_CPU,
    WORKERS,
    Run,
    Target,
    Variant,
    World,
    default_variants,
    hita_server,
    load,
    peers_server,
    pin_self,
    targets,
    warm,
    world,
)
from chaos_world import Redises
from harness.bench import L1_SETTING, l1_variants
from harness.reports import command_line, machine_facts, publish

HEADING: Final = "HTTP reads under wrk (scripts/bench_http.py)"
TREES_HEADING: Final = "HTTP reads: checkouts compared (scripts/bench_http.py --hita-tree)"
PROFILE_HEADING: Final = "Profile of the warm GET /v1.0/user/{id} (scripts/bench_http.py --profile)"


@contextmanager
def topology(w: World, name: str) -> Iterator[None]:
    """Redis servers of a ``name`` topology for the HITA variants that use it
    (started from here, so on the load CPU like the standalone Redis)."""
    redises = Redises(name, w.root / f"redis-{name}")
    redises.start()
    try:
        redises.wait_healthy()
        ports = [cast(int, n.port) for n in redises.data_nodes()]
        w.topologies[name] = (redises.settings(None), ports)
        yield
    finally:
        redises.stop()


@dataclasses.dataclass
class Series:
    runs: list[Run] = dataclasses.field(default_factory=list)
    ratios: list[float] = dataclasses.field(default_factory=list)
    cpu_ratios: list[float] = dataclasses.field(default_factory=list)  # hello's CPU / this CPU


def measure(
    w: World, seconds: float, reps: int, only: list[str]
) -> tuple[dict[str, Series], list[Run]]:
    chosen = [t for t in targets(w) if not only or any(o in t.name for o in only)]
    redis = SyncRedis.from_url(w.redis_url)
    series = {t.name: Series() for t in chosen}
    hellos: list[Run] = []  # at CONNECTIONS: the ceiling's row

    def hello(target: Target) -> Target:
        return Target(HELLO, w.peers + "/hello", connections=target.connections)

    def ceiling(target: Target) -> Run:
        """A hello-world run at the target's connections (kept for the ceiling's row)."""
        run = load(w, hello(target), seconds, redis)
        if target.connections == CONNECTIONS:
            hellos.append(run)
        return run

    for target in [hello(chosen[0]), *chosen]:  # one short unmeasured run each: pools, code
        warm(w, target)
        load(w, target, min(2.0, seconds), redis)
    for rep in range(reps):
        last: dict[int, Run] = {}  # the latest hello run, by connections
        for target in chosen:
            if target.connections not in last:
                last[target.connections] = ceiling(target)
            before = last[target.connections]
            warm(w, target)  # another process's fills emptied its L1 meanwhile
            run = load(w, target, seconds, redis)
            after = last[target.connections] = ceiling(target)
            series[target.name].runs.append(run)
            series[target.name].ratios.append(run.rps / ((before.rps + after.rps) / 2))
            series[target.name].cpu_ratios.append(((before.cpu_us + after.cpu_us) / 2) / run.cpu_us)
            print(
                f"rep {rep + 1}/{reps} {target.name}: {run.rps:,.0f} req/s"
                f" ({series[target.name].ratios[-1]:.2f}x hello), p99 {run.p99_ms:.1f} ms,"
                f" {run.cpu_us:.0f} CPU µs/request ({series[target.name].cpu_ratios[-1]:.2f}x),"
                f" Redis commands per request {per_request(run)}",
                flush=True,
            )
    redis.close()
    return series, hellos


# -- report --------------------------------------------------------------------


def per_request(run: Run) -> str:
    total = sum(run.commands.values())
    if not total:
        return "0"
    top = sorted(run.commands.items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{name} {calls / run.requests:.2f}" for name, calls in top)
    return f"{total / run.requests:.2f} ({parts})"


def table(series: dict[str, Series], hellos: list[Run]) -> list[str]:
    hello_rps = statistics.median(r.rps for r in hellos)
    hello_p99 = statistics.median(r.p99_ms for r in hellos)
    hello_cpu = statistics.median(r.cpu_us for r in hellos)
    rows = [
        "| handler | req/s (median) | x hello (paired) | p99 | server CPU µs per request"
        " | x hello by CPU | Redis commands per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| aiohttp hello world, `web.json_response` (the ceiling) | {hello_rps:,.0f} | 1.00"
        f" | {hello_p99:.1f} ms | {hello_cpu:.0f} | 1.00 | 0 |",
    ]
    for name, s in series.items():
        mid = sorted(s.runs, key=lambda r: r.rps)[len(s.runs) // 2]
        errors = sum(r.errors for r in s.runs)
        note = f" ({errors} errors)" if errors else ""
        rps = statistics.median(r.rps for r in s.runs)
        p99 = statistics.median(r.p99_ms for r in s.runs)
        cpu = statistics.median(r.cpu_us for r in s.runs)
        rows.append(
            f"| {name}{note} | {rps:,.0f} | **{statistics.median(s.ratios):.2f}** | {p99:.1f} ms"
            f" | {cpu:.0f} | {statistics.median(s.cpu_ratios):.2f} | {per_request(mid)} |"
        )
    return rows


def make_command(args: argparse.Namespace) -> str:
    """The make command that runs these arguments (``make bench-http`` and its variables)."""
    words = ["make bench-http"]
    if args.topology:
        words.append(f'TOPOLOGIES="{" ".join(args.topology)}"')
    if args.hita_tree:
        words.append(f'TREES="{" ".join(args.hita_tree)}"')
    if args.only:
        words.append(f"ONLY='{args.only[0]}'")
    return " ".join(words)


def report(
    series: dict[str, Series], hellos: list[Run], args: argparse.Namespace, command: str
) -> str:
    l1 = (
        f"`{L1_SETTING}` exists in this HITA: one HITA process per setting, both measured."
        if len(l1_variants()) > 1
        else f"This HITA has no `{L1_SETTING}` setting yet: one HITA process, its only read path."
    )
    return "\n".join(
        [
            f"Command: `{command}` (what `{make_command(args)}` runs)",
            "",
            *machine_facts(),
            f"- wrk -t1 -c{CONNECTIONS}, {args.seconds:g} s runs, {args.reps} repetitions,"
            f" {len(hellos)} hello-world runs; {args.users:,} seeded users",
            "",
            *table(series, hellos),
            "",
            "Every measured run sits between two hello-world runs (the ceiling) at the same",
            "number of connections and its `x hello` is its req/s divided by their mean; the",
            "table shows medians over the repetitions (the ceiling's row: the median of every",
            f"hello run at {CONNECTIONS} connections). The server processes are pinned to CPU",
            f"{SERVER_CPU} with taskset, but for the `--workers {WORKERS}` row, whose workers may",
            "use every CPU (its `x hello` is against the one-CPU ceiling, so scaling shows);",
            "Redis, PostgreSQL, wrk and the driver run on the other CPU. The machine is shared",
            "with other work, so absolute req/s drift from run to run: read the paired ratios.",
            "Each route is warmed first (every id read three times: into Redis, into L1, and",
            "its answer kept beside the L1 entry), so the runs measure warm hits; the user",
            "route cycles over every seeded id with a wrk Lua script. HITA runs `hita serve`",
            "with `HITA_ENV=production` (its defaults: `LOG_LEVEL=INFO`, the access line on,",
            "JSON lines, to a file) and an admin token. `errors` are non-2xx answers and",
            "socket errors, as wrk counts them.",
            "The `(floor)` row is the user route's process answering `GET /v1.0/health/live`,",
            "a constant, public answer: aiohttp, HITA's route table and its front",
            "(request id, admission, metrics, the access line) with no token and no cache. What",
            "the user route costs above it is the token check and the L1 read; what the floor",
            "costs above hello world is HITA's router, its front and its access line.",
            "`server CPU µs per request` is the server process's user + system CPU time",
            "(/proc/<pid>/stat, its workers' too) over the run divided by its requests;",
            "`x hello by CPU` is the paired hello runs' CPU per request divided by this one's.",
            "On a shared core it is steadier than req/s, since time spent waiting for the CPU",
            "does not count.",
            "Redis commands per request: INFO commandstats after CONFIG RESETSTAT, divided",
            "by wrk's request count (the median-req/s repetition), per command; Redis counts",
            "the commands a Lua script runs too (an EVALSHA's GET and PTTL).",
            l1,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each wrk run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--only", action="append", default=[], help="measure the handlers whose name holds this"
    )
    parser.add_argument(
        "--topology",
        action="append",
        default=[],
        choices=("sentinel", "cluster"),
        help="also HITA with L1 on against this topology's own Redis servers; repeatable",
    )
    parser.add_argument("--profile", type=float, metavar="SECONDS", help="profile instead")
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ alone")
    parser.add_argument(
        "--hita-tree",
        action="append",
        default=[],
        metavar="LABEL=DIR[;NAME=VALUE...]",
        help="serve HITA from another checkout (with these settings) instead; repeatable",
    )
    args = parser.parse_args()
    if not pin_self():
        print("warning: fewer than 2 CPUs; nothing is pinned", file=sys.stderr)
    command = command_line("bench_http.py")
    variants = [Variant.parse(t) for t in args.hita_tree] or default_variants()
    with world(args.users) as w:
        if args.profile:
            with peers_server(w):
                body = run_profile(
                    w, [v for v in variants if v.workers == 1][-1], args.profile, command
                )
            heading = PROFILE_HEADING
        else:
            with ExitStack() as stack:
                stack.enter_context(peers_server(w))
                for name in args.topology:
                    stack.enter_context(topology(w, name))
                    variants.insert(-1, Variant.on(name))  # before the workers' row
                for variant in variants:
                    stack.enter_context(hita_server(w, variant))
                series, hellos = measure(w, args.seconds, args.reps, args.only)
            body = report(series, hellos, args, command)
            heading = TREES_HEADING if args.hita_tree else HEADING
    publish(heading, body, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
