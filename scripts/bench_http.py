"""Benchmark HTTP reads with wrk: HITA's cached routes against the aiohttp ceiling and peers.

One paired run on this machine:

- a private Redis and PostgreSQL (hita.embedded), ``--users`` seeded users;
- the server processes pinned to CPU 0 with ``taskset``; Redis, PostgreSQL,
  wrk and this script on CPU 1;
- a peers app (``--serve-peers``): ``/hello`` (``web.json_response``, the
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

``--profile SECONDS`` instead runs HITA under cProfile while wrk loads the warm
``GET /v1.0/user/{id}`` and writes the per-request cost by part.

    python scripts/bench_http.py [--seconds 8] [--reps 3] [--users 10000]
    python scripts/bench_http.py --profile 20
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import json
import os
import pstats
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final, cast

import aiohttp
import orjson
from aiohttp import web
from redis import Redis as SyncRedis

from hita.config import load_config
from hita.db.database import open_database
from hita.db.migrate import apply_migrations
from hita.domain.roles import Role
from hita.embedded import EmbeddedPostgres, EmbeddedRedis
from hita.services import seeding
from hita.services.tokens import Tokens

from bench_common import (
    BENCH_ROOT,
    DOCUMENT,
    L1_SETTING,
    free_port,
    l1_label,
    l1_variants,
    machine_facts,
    write_section,
)

HEADING: Final = "HTTP reads under wrk (scripts/bench_http.py)"
PROFILE_HEADING: Final = "Profile of the warm GET /v1.0/user/{id} (scripts/bench_http.py --profile)"
SERVER_CPU: Final = "0"
LOAD_CPU: Final = 1
CONNECTIONS: Final = 50
MANY_CONNECTIONS: Final = 200  # the row that shows admission refuses no busy-but-idle load
WORKERS: Final = 2  # the row that shows scaling over the machine's CPUs
JWT_SECRET: Final = "bench-secret-" + "x" * 40  # a throwaway secret for a private server
SEED: Final = 20_261_129
START_TIMEOUT_S: Final = 60.0
WARM_CONCURRENCY: Final = 32
WARM_ATTEMPTS: Final = 5  # a 503 overloaded is retried after its Retry-After
WARM_PASSES: Final = 3
HELLO: Final = "hello"
PYTHON: Final = sys.executable

LUA: Final = r"""
local template, ids, i = nil, nil, 0
init = function(args)
  template = args[1]
  if args[2] then
    ids = {}
    for line in io.lines(args[2]) do ids[#ids + 1] = line end
  end
end
request = function()
  if ids == nil then return wrk.format("GET", template) end
  i = i % #ids + 1
  return wrk.format("GET", (string.gsub(template, "{id}", ids[i])))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f,'
    .. ' "errors": %d, "status_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


# -- the peers app (run in its own process with --serve-peers) -----------------


def peers_app(redis_url: str, ids: list[str]) -> web.Application:
    from aiocache import RedisCache as AioRedisCache  # noqa: PLC0415 - the bench extra
    from aiocache import cached as aio_cached  # noqa: PLC0415
    from cashews import Cache as CashewsCache  # noqa: PLC0415
    from redis.asyncio import Redis  # noqa: PLC0415

    raw = Redis.from_url(redis_url)
    cashews = CashewsCache()
    cashews.setup(redis_url)
    host, port = redis_url.removeprefix("redis://").split("/", 1)[0].split(":")

    @cashews(ttl=3600, key="peers:cashews:{user_id}")
    async def cashews_user(user_id: str) -> dict[str, Any]:
        return {**DOCUMENT, "id": user_id}

    async def user(user_id: str) -> dict[str, Any]:
        return {**DOCUMENT, "id": user_id}

    decorate = aio_cached(
        ttl=3600,
        cache=AioRedisCache,
        endpoint=host,
        port=int(port),
        namespace="peers-aiocache",
        key_builder=lambda _f, user_id: user_id,
    )
    aiocache_user = cast(Callable[[str], Awaitable[dict[str, Any]]], decorate(user))

    def dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"success": True, "message": "hello, world"})

    async def get(request: web.Request) -> web.Response:
        value = orjson.loads(await raw.get(f"peers:raw:{request.match_info['id']}") or b"null")
        return web.json_response({"success": True, "user": value}, dumps=dumps)

    async def via_aiocache(request: web.Request) -> web.Response:
        user = await aiocache_user(request.match_info["id"])
        return web.json_response({"success": True, "user": user}, dumps=dumps)

    async def via_cashews(request: web.Request) -> web.Response:
        user = await cashews_user(request.match_info["id"])
        return web.json_response({"success": True, "user": user}, dumps=dumps)

    async def fill(app: web.Application) -> Any:
        for user_id in ids:  # every key warm before the first request
            await raw.set(f"peers:raw:{user_id}", orjson.dumps({**DOCUMENT, "id": user_id}))
            await cashews_user(user_id)
            await aiocache_user(user_id)
        yield
        await raw.aclose()
        await cashews.close()

    app = web.Application()
    app.cleanup_ctx.append(fill)
    app.router.add_get("/hello", hello)
    app.router.add_get("/get/{id}", get)
    app.router.add_get("/aiocache/{id}", via_aiocache)
    app.router.add_get("/cashews/{id}", via_cashews)
    return app


def serve_peers(port: int, redis_url: str, ids_file: Path) -> int:
    ids = ids_file.read_text().split()
    web.run_app(peers_app(redis_url, ids), host="127.0.0.1", port=port, access_log=None, print=None)
    return 0


# -- processes -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    url: str  # may hold {id}: cycled over the ids file
    headers: tuple[str, ...] = ()
    connections: int = CONNECTIONS


@dataclasses.dataclass(frozen=True)
class Run:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    commands: dict[str, int]
    cpu_us: float  # the server process's CPU time (user + system) per request


CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far
    (``/proc/<pid>/stat``; ``hita serve --workers`` runs its workers as children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_seconds(int(child)) for child in children)


@dataclasses.dataclass
class World:
    root: Path
    redis_url: str
    database_url: str
    ids_file: Path
    ids: list[str]
    token: str
    peers: str = ""
    hita: dict[str, str] = dataclasses.field(default_factory=dict)  # variant label -> base URL
    hita_labels: list[str] = dataclasses.field(default_factory=list)  # in start order
    pids: dict[str, int] = dataclasses.field(default_factory=dict)  # base URL -> server PID


@dataclasses.dataclass(frozen=True)
class Variant:
    """One HITA process: its label in the table, settings, and source tree."""

    label: str
    env: dict[str, str]
    tree: Path | None = None  # another checkout (PYTHONPATH); None: this one
    workers: int = 1  # more than one: ``hita serve --workers``, on every CPU

    @classmethod
    def for_l1(cls, l1: bool | None, workers: int = 1) -> Variant:
        env = {} if l1 is None else {L1_SETTING: "true" if l1 else "false"}
        label = l1_label(l1) + (f", `--workers {workers}` (all CPUs)" if workers > 1 else "")
        return cls(label, env, workers=workers)

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``LABEL=DIR[;NAME=VALUE...]`` (``--hita-tree``)."""
        head, *settings = text.split(";")
        label, _, tree = head.partition("=")
        env = dict(item.split("=", 1) for item in settings if item)
        return cls(f", {label}", env, Path(tree).resolve())


def default_variants() -> list[Variant]:
    """L1 off and on (when this HITA has the switch), and the last again with workers."""
    variants = [Variant.for_l1(l1) for l1 in l1_variants()]
    return [*variants, Variant.for_l1(l1_variants()[-1], WORKERS)]


def pin_self() -> bool:
    """This script (and what it starts without taskset) on the load CPU."""
    if (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(0, {LOAD_CPU})
    return True


def pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", SERVER_CPU, *argv] if (os.cpu_count() or 1) >= 2 else argv


@contextmanager
def process(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    stop: int = signal.SIGTERM,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A child we own by PID: stopped (then killed if need be) on exit."""
    with log_path.open("ab") as log_file:
        child = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                child.send_signal(stop)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def wait_http(url: str, child: subprocess.Popen[bytes], log_path: Path) -> None:
    async def poll() -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if child.poll() is not None:
                    raise RuntimeError(f"{url} exited during start-up; see {log_path}")
                try:
                    async with http.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{url} did not answer in {START_TIMEOUT_S:.0f} s")

    asyncio.run(poll())


def hita_env(world: World, port: int, variant: Variant) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        HITA_ENV="production",
        HITA_DATA_DIR=str(world.root / "hita"),
        DATABASE_URL=world.database_url,
        REDIS_URL=world.redis_url,
        JWT_SECRET=JWT_SECRET,
        HOST="127.0.0.1",
        PORT=str(port),
    )
    env.update(variant.env)
    if variant.tree is not None:
        env["PYTHONPATH"] = str(variant.tree)
    return env


async def _prepare_database(world: World, users: int) -> tuple[list[str], str]:
    config = load_config({"HITA_ENV": "test", "DATABASE_URL": world.database_url})
    async with open_database(config.database) as database:
        async with database.connection() as conn:
            await apply_migrations(conn)
        if await database.fetchval("SELECT count(*) FROM users") < users:
            await seeding.seed(database, users, "unused", "unused-hash", rng=random.Random(SEED))
        rows = await database.fetch("SELECT id FROM users WHERE role <> 'superadmin' ORDER BY id")
        admin = await database.fetchval(
            "SELECT id FROM users WHERE role = 'admin' AND is_active ORDER BY id LIMIT 1"
        )
    return [r["id"] for r in rows], admin


@contextmanager
def world(users: int) -> Iterator[World]:
    root = BENCH_ROOT / "http"
    root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        redis = EmbeddedRedis(root / "redis", port=free_port())
        redis.start()
        stack.callback(redis.stop)
        postgres = EmbeddedPostgres(root / "postgres", database="hita_bench", durable=False)
        postgres.start()
        stack.callback(postgres.stop)
        postgres.create_database("hita_bench", drop_first=True)
        ids_file = root / "ids.txt"
        config = load_config({"HITA_ENV": "test", "JWT_SECRET": JWT_SECRET})
        w = World(root, redis.url, postgres.url, ids_file, [], "")
        w.ids, admin = asyncio.run(_prepare_database(w, users))
        ids_file.write_text("\n".join(w.ids) + "\n")
        w.token = Tokens(config.auth).issue(admin, Role.ADMIN)
        yield w


@contextmanager
def peers_server(w: World) -> Iterator[None]:
    port = free_port()
    log_path = w.root / "peers.log"
    argv = [PYTHON, __file__, "--serve-peers", str(port), w.redis_url, str(w.ids_file)]
    with process(pinned(argv), dict(os.environ), log_path) as child:
        wait_http(f"http://127.0.0.1:{port}/hello", child, log_path)
        w.peers = f"http://127.0.0.1:{port}"
        w.pids[w.peers] = child.pid
        yield


@contextmanager
def hita_server(
    w: World, variant: Variant, *, profile: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    log_path = w.root / f"hita{re.sub(r'[^A-Za-z0-9]+', '-', variant.label)}.log"
    argv = [PYTHON, "-m", "hita", "serve"]
    if variant.workers > 1:
        argv += ["--workers", str(variant.workers)]
    else:
        argv = pinned(argv)
    if profile is not None:
        argv = pinned([PYTHON, __file__, "--serve-profiled", str(profile)])
    env = hita_env(w, port, variant)
    with process(argv, env, log_path, stop=signal.SIGINT, cwd=variant.tree) as child:
        wait_http(f"http://127.0.0.1:{port}/v1.0/health", child, log_path)
        w.hita[variant.label] = f"http://127.0.0.1:{port}"
        w.hita_labels.append(variant.label)
        w.pids[w.hita[variant.label]] = child.pid
        yield child


def serve_profiled(out: Path) -> int:
    """``hita serve`` with cProfile switched on by SIGUSR1 and off (and written
    to ``out``) by SIGUSR2, so start-up and warm-up stay out of the profile."""
    from hita.cli import main as hita_main  # noqa: PLC0415

    profiler = cProfile.Profile()

    def start(signum: int, frame: object) -> None:
        profiler.enable()

    def stop(signum: int, frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(str(out))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return hita_main(["serve"])


# -- load ----------------------------------------------------------------------


def commandstats(redis: SyncRedis) -> dict[str, int]:
    stats: dict[str, Any] = redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_").upper(): int(v["calls"])
        for name, v in stats.items()
        if name not in ("cmdstat_config", "cmdstat_info")
    }


def wrk(w: World, target: Target, seconds: float, redis: SyncRedis) -> Run:
    script = w.root / "bench.lua"
    script.write_text(LUA)
    path = target.url.split("/", 3)[3]
    base = target.url.removesuffix(path)
    argv = ["wrk", "-t1", f"-c{target.connections}", f"-d{seconds:g}s", "--latency"]
    argv += ["-s", str(script)]
    for header in target.headers:
        argv += ["-H", header]
    argv += [base, "--", "/" + path]
    if "{id}" in path:
        argv.append(str(w.ids_file))
    pid = w.pids[base.rstrip("/")]
    redis.config_resetstat()
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before
    commands = commandstats(redis)
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    data = json.loads(line.removeprefix("BENCH "))
    return Run(
        requests=data["requests"],
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"] + data["status_errors"],
        commands=commands,
        cpu_us=cpu / max(data["requests"], 1) * 1e6,
    )


async def _warm(urls: list[str], headers: dict[str, str]) -> None:
    queue = iter(urls)

    async def worker(http: aiohttp.ClientSession) -> None:
        for url in queue:
            for _ in range(WARM_ATTEMPTS):  # a cold fill can saturate the server: it says so
                async with http.get(url, headers=headers) as response:
                    await response.read()
                    if response.status != 503 or "Retry-After" not in response.headers:
                        break
                    await asyncio.sleep(float(response.headers["Retry-After"]))
            if response.status != 200:
                raise RuntimeError(f"warm-up: {url} answered {response.status}")

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(WARM_CONCURRENCY)))


def warm(w: World, target: Target, passes: int) -> None:
    """Every key the target reads is in the cache before the measured run, in
    L1 with its answer: ``WARM_PASSES`` reads each (the first fills Redis, whose
    tracking echo drops L1's copy; the second fills L1; the third keeps the
    answer rendered beside the entry)."""
    headers = dict(h.split(": ", 1) for h in target.headers)
    urls = [target.url.replace("{id}", i) for i in w.ids] if "{id}" in target.url else [target.url]
    for _ in range(passes):
        asyncio.run(_warm(urls, headers))


def targets(w: World) -> list[Target]:
    """The peers, each HITA process's routes, the user route at 200 connections,
    and last the workers' (whose fills would empty the others' L1 through Redis's
    tracking: every HITA process here shares one Redis)."""
    auth = (f"Authorization: Bearer {w.token}",)
    found = [
        Target("one redis.asyncio GET + orjson, no auth", w.peers + "/get/{id}"),
        Target("aiocache `@cached` hit, no auth", w.peers + "/aiocache/{id}"),
        Target("cashews `@cache` hit, no auth", w.peers + "/cashews/{id}"),
    ]
    workers = []
    for label, base in w.hita.items():
        user = Target(f"HITA `GET /v1.0/user/{{id}}`{label}", base + "/v1.0/user/{id}", auth)
        if "--workers" in label:
            workers.append(user)
            continue
        found += [
            user,
            Target(
                f"HITA `GET /v1.0/dashboard/stats`{label}", base + "/v1.0/dashboard/stats", auth
            ),
            Target(
                f"HITA `GET /v1.0/user/list?page=1`{label}", base + "/v1.0/user/list?page=1", auth
            ),
        ]
    last = w.hita_labels[-2] if len(w.hita_labels) > 1 else ""  # the single-process L1 on
    if last in w.hita:
        name = f"HITA `GET /v1.0/user/{{id}}`{last}, {MANY_CONNECTIONS} connections"
        found.append(Target(name, w.hita[last] + "/v1.0/user/{id}", auth, MANY_CONNECTIONS))
    return found + workers


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
        run = wrk(w, hello(target), seconds, redis)
        if target.connections == CONNECTIONS:
            hellos.append(run)
        return run

    for target in [hello(chosen[0]), *chosen]:  # one short unmeasured run each: pools, code
        warm(w, target, WARM_PASSES)
        wrk(w, target, min(2.0, seconds), redis)
    for rep in range(reps):
        last: dict[int, Run] = {}  # the latest hello run, by connections
        for target in chosen:
            if target.connections not in last:
                last[target.connections] = ceiling(target)
            before = last[target.connections]
            warm(w, target, WARM_PASSES)  # another process's fills emptied its L1 meanwhile
            run = wrk(w, target, seconds, redis)
            after = last[target.connections] = ceiling(target)
            series[target.name].runs.append(run)
            series[target.name].ratios.append(run.rps / ((before.rps + after.rps) / 2))
            series[target.name].cpu_ratios.append(((before.cpu_us + after.cpu_us) / 2) / run.cpu_us)
            print(
                f"rep {rep + 1}/{reps} {target.name}: {run.rps:,.0f} req/s"
                f" ({series[target.name].ratios[-1]:.2f}x hello), p99 {run.p99_ms:.1f} ms,"
                f" {run.cpu_us:.0f} CPU µs/request ({series[target.name].cpu_ratios[-1]:.2f}x)",
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
            f"Command: `{command}` (what `make bench-http` runs)",
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


# -- profile -------------------------------------------------------------------

# Parts of a request, each the cumulative time of one function (file suffix, name).
PARTS: Final = (
    (
        "aiohttp: the whole request (RequestHandler._handle_request)",
        "web_protocol.py",
        "_handle_request",
    ),
    ("aiohttp: routing and the middleware chain (Application._handle)", "web_app.py", "_handle"),
    ("front middleware (everything of ours)", "api/front.py", "front"),
    ("  request id (RequestIds.of)", "api/front.py", "of"),
    ("  admission (Admission.admit)", "api/admission.py", "admit"),
    ("  access line (AccessLog.line)", "api/access_log.py", "line"),
    ("  Prometheus (Metrics.observe_request)", "metrics.py", "observe_request"),
    ("  token and access check (Authenticator.authorize)", "api/auth.py", "authorize"),
    ("    the token's user check (check_principal)", "api/auth.py", "check_principal"),
    ("    PyJWT decode and verify (a new token)", "api_jwt.py", "decode_complete"),
    ("  handler get_user", "handlers/users.py", "get_user"),
    ("    the response object (Answer.response)", "api/answers.py", "response"),
    ("  ETag and If-None-Match (tagged)", "api/etag.py", "tagged"),
    ("L1 views, both reads (ReadThrough.near_view)", "cache/readthrough.py", "near_view"),
    ("  L1: drain the tracking socket (Tracking.drain)", "cache/tracking.py", "drain"),
    ("  cache keys (KeyBuilder.key)", "cache/keys.py", "key"),
    ("reads through the cache (get_or_load: L1 miss)", "cache/readthrough.py", "get_or_load"),
    ("  decode the stored JSON (Entry.value)", "cache/codec.py", "value"),
    ("access lines written (AccessLog.flush)", "api/access_log.py", "flush"),
    ("aiohttp: write the response (StreamResponse.prepare)", "web_response.py", "prepare"),
)


def profile_parts(path: Path) -> tuple[int, list[tuple[str, float]], list[str]]:
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    requests = sum(
        v[0] for (file, _, fn), v in raw.items() if fn == "front" and file.endswith("front.py")
    )
    rows = []
    for label, file_suffix, name in PARTS:
        cum = sum(
            v[3] for (file, _, fn), v in raw.items() if fn == name and file.endswith(file_suffix)
        )
        rows.append((label, cum / max(requests, 1) * 1e6))
    top = sorted(raw.items(), key=lambda kv: -kv[1][2])[:15]
    top_rows = [
        f"| `{Path(file).name}:{line}` {fn} | {v[2] / max(requests, 1) * 1e6:.1f} |"
        for (file, line, fn), v in top
    ]
    return requests, rows, top_rows


def run_profile(w: World, variant: Variant, seconds: float, command: str) -> str:
    out = w.root / "hita.prof"
    out.unlink(missing_ok=True)
    with hita_server(w, variant, profile=out) as child:
        target = targets(w)[3]  # HITA's user route
        warm(w, target, WARM_PASSES)
        redis = SyncRedis.from_url(w.redis_url)
        wrk(w, target, min(2.0, seconds), redis)  # pools and code paths, unprofiled
        child.send_signal(signal.SIGUSR1)
        run = wrk(w, target, seconds, redis)
        child.send_signal(signal.SIGUSR2)
        redis.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    requests, parts, top = profile_parts(out)
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            *machine_facts(),
            f"- {target.name}: {run.requests:,} requests under wrk -t1 -c{CONNECTIONS}"
            f" for {seconds:g} s, all of them profiled (cProfile on: {run.rps:,.0f} req/s;"
            f" {requests:,} requests counted)",
            "",
            "| part of a request | µs per request (cumulative, under cProfile) | share |",
            "| --- | ---: | ---: |",
            *(
                f"| {label.replace('  ', '&nbsp;&nbsp;')} | {us:.1f} | {us / parts[0][1]:.0%} |"
                for label, us in parts
            ),
            "",
            "The hardest hitters by own time (tottime), µs per request:",
            "",
            "| function | µs per request |",
            "| --- | ---: |",
            *top,
            "",
            "cProfile slows every Python call down, so the absolute figures are inflated",
            "(compare the req/s above with the wrk table); read the shares. An indented part",
            "is inside the one above it. Coroutine parts count only the time they run, not",
            "the time they wait for Redis.",
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
    parser.add_argument("--profile", type=float, metavar="SECONDS", help="profile instead")
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ alone")
    parser.add_argument(
        "--hita-tree",
        action="append",
        default=[],
        metavar="LABEL=DIR[;NAME=VALUE...]",
        help="serve HITA from another checkout (with these settings) instead; repeatable",
    )
    parser.add_argument("--serve-peers", nargs=3, metavar=("PORT", "REDIS_URL", "IDS"))
    parser.add_argument("--serve-profiled", type=Path, metavar="OUT")
    args = parser.parse_args()
    if args.serve_peers:
        port, redis_url, ids = args.serve_peers
        return serve_peers(int(port), redis_url, Path(ids))
    if args.serve_profiled:
        return serve_profiled(args.serve_profiled)
    if not pin_self():
        print("warning: fewer than 2 CPUs; nothing is pinned", file=sys.stderr)
    command = shlex.join(["python", "scripts/bench_http.py", *sys.argv[1:]])
    variants = [Variant.parse(t) for t in args.hita_tree] or default_variants()
    with world(args.users) as w:
        if args.profile:
            with peers_server(w):
                body = run_profile(w, variants[-1], args.profile, command)
            heading = PROFILE_HEADING
        else:
            with ExitStack() as stack:
                stack.enter_context(peers_server(w))
                for variant in variants:
                    stack.enter_context(hita_server(w, variant))
                series, hellos = measure(w, args.seconds, args.reps, args.only)
            body = report(series, hellos, args, command)
            heading = HEADING
    print(body)
    if not args.no_write:
        write_section(heading, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
