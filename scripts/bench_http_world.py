"""bench_http.py's servers and load: a private PostgreSQL and Redis with
seeded users, the peers app and HITA processes pinned to the server CPU, wrk
runs (a Lua script that cycles over every id and prints one JSON line), and
the server's CPU time and Redis commands per request."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

import aiohttp
from redis import Redis as SyncRedis

from hita.config import load_config
from hita.db.database import open_database
from hita.db.migrate import apply_migrations
from hita.domain.roles import Role
from hita.embedded import EmbeddedPostgres, EmbeddedRedis
from hita.services import seeding
from hita.services.tokens import Tokens

from harness import procs, wrk
from harness.bench import BENCH_ROOT, L1_SETTING, l1_label, l1_variants
from harness.ports import free_port
from harness.service import SERVE, service_env
from harness.waits import wait_up

SERVER_CPU: Final = "0"
LOAD_CPU: Final = 1
CONNECTIONS: Final = 50
MANY_CONNECTIONS: Final = 200  # the row that shows admission refuses no busy-but-idle load
LIVE: Final = "/v1.0/health/live"  # a constant answer through the front
WORKERS: Final = 2  # the row that shows scaling over the machine's CPUs
JWT_SECRET: Final = "bench-secret-" + "x" * 40  # a throwaway secret for a private server
SEED: Final = 20_261_129
WARM_CONCURRENCY: Final = 32
WARM_ATTEMPTS: Final = 5  # a 503 overloaded is retried after its Retry-After
WARM_PASSES: Final = 3
HELLO: Final = "hello"
SCRIPTS: Final = Path(__file__).resolve().parent

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
    # topology -> its Redis settings and its data nodes' ports (commandstats)
    topologies: dict[str, tuple[dict[str, str], list[int]]] = dataclasses.field(
        default_factory=dict
    )
    redis_of: dict[str, str] = dataclasses.field(default_factory=dict)  # base URL -> topology
    pids: dict[str, int] = dataclasses.field(default_factory=dict)  # base URL -> server PID


@dataclasses.dataclass(frozen=True)
class Variant:
    """One HITA process: its label in the table, settings, and source tree."""

    label: str
    env: dict[str, str]
    tree: Path | None = None  # another checkout (PYTHONPATH); None: this one
    workers: int = 1  # more than one: ``hita serve --workers``, on every CPU
    topology: str = "standalone"  # or Sentinel, or Cluster: its own Redis servers

    @classmethod
    def for_l1(cls, l1: bool | None, workers: int = 1) -> Variant:
        env = {} if l1 is None else {L1_SETTING: "true" if l1 else "false"}
        label = l1_label(l1) + (f", `--workers {workers}` (all CPUs)" if workers > 1 else "")
        return cls(label, env, workers=workers)

    @classmethod
    def on(cls, topology: str) -> Variant:
        """L1 on, against a ``topology`` of Redis servers of its own."""
        return cls(f", L1 on, {TOPOLOGY_LABELS[topology]}", {L1_SETTING: "true"}, topology=topology)

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``LABEL=DIR[;NAME=VALUE...]`` (``--hita-tree``)."""
        head, *settings = text.split(";")
        label, _, tree = head.partition("=")
        env = dict(item.split("=", 1) for item in settings if item)
        return cls(f", {label}", env, Path(tree).resolve())


TOPOLOGY_LABELS: Final = {
    "sentinel": "Sentinel (master, replica, 3 sentinels)",
    "cluster": "Cluster (3 primaries, 3 replicas)",
}


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
        # Up to six HITA processes (pools of 20, reader sessions, probes) share it.
        postgres = EmbeddedPostgres(
            root / "postgres", database="hita_bench", durable=False, max_connections=300
        )
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
    argv = [sys.executable, str(SCRIPTS / "bench_http_peers.py"), str(port), w.redis_url]
    argv.append(str(w.ids_file))
    with procs.running(procs.pinned(argv, SERVER_CPU), os.environ, log_path) as child:
        wait_up(f"http://127.0.0.1:{port}/hello", child=child)
        w.peers = f"http://127.0.0.1:{port}"
        w.pids[w.peers] = child.pid
        yield


@contextmanager
def hita_server(
    w: World, variant: Variant, *, profile: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    log_path = w.root / f"hita{re.sub(r'[^A-Za-z0-9]+', '-', variant.label)}.log"
    # This run's log alone: with the access line on (the default measured), a
    # run writes hundreds of MB, which appended across runs filled the disk.
    log_path.unlink(missing_ok=True)
    argv = list(SERVE)
    if variant.workers > 1:
        argv += ["--workers", str(variant.workers)]  # every CPU: not pinned
    if profile is not None:
        argv = [sys.executable, str(SCRIPTS / "bench_http_profile.py"), "--serve", str(profile)]
    standalone = variant.topology == "standalone"
    env = service_env(
        database_url=w.database_url,
        redis_url=w.redis_url if standalone else None,
        data_dir=w.root / "hita",
        secret=JWT_SECRET,
        port=port,
        settings={**({} if standalone else w.topologies[variant.topology][0]), **variant.env},
    )
    if variant.tree is not None:
        env["PYTHONPATH"] = str(variant.tree)
    if variant.workers == 1 or profile is not None:
        argv = procs.pinned(argv, SERVER_CPU)
    with procs.running(argv, env, log_path, stop_signal=signal.SIGINT, cwd=variant.tree) as child:
        wait_up(f"http://127.0.0.1:{port}/v1.0/health", child=child)
        w.hita[variant.label] = f"http://127.0.0.1:{port}"
        w.hita_labels.append(variant.label)
        w.redis_of[w.hita[variant.label]] = variant.topology
        w.pids[w.hita[variant.label]] = child.pid
        yield child


# -- load ----------------------------------------------------------------------


# What the servers of a topology run by themselves (replication, sentinels' checks,
# the tracking keepalive): not counted on a topology's rows.
BACKGROUND: Final = frozenset({"PING", "INFO", "PUBLISH", "REPLCONF"})


def commandstats(redis: SyncRedis) -> dict[str, int]:
    stats: dict[str, Any] = redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_").upper(): int(v["calls"])
        for name, v in stats.items()
        if name not in ("cmdstat_config", "cmdstat_info")
    }


def counted(w: World, base: str, redis: SyncRedis) -> list[SyncRedis]:
    """The Redis servers whose commands a run against ``base`` counts."""
    name = w.redis_of.get(base, "standalone")
    if name == "standalone":
        return [redis]
    return [SyncRedis(port=port) for port in w.topologies[name][1]]


def commands_of(servers: list[SyncRedis], standalone: SyncRedis) -> dict[str, int]:
    total: dict[str, int] = {}
    for server in servers:
        for name, calls in commandstats(server).items():
            if server is standalone or name not in BACKGROUND:
                total[name] = total.get(name, 0) + calls
    return total


def load(w: World, target: Target, seconds: float, redis: SyncRedis) -> Run:
    script = w.root / "bench.lua"
    script.write_text(LUA)
    path = target.url.split("/", 3)[3]
    base = target.url.removesuffix(path)
    script_args = ["/" + path, *([str(w.ids_file)] if "{id}" in path else [])]
    argv = wrk.command(
        base,
        connections=target.connections,
        seconds=seconds,
        script=script,
        headers=target.headers,
        script_args=script_args,
    )
    pid = w.pids[base.rstrip("/")]
    servers = counted(w, base.rstrip("/"), redis)
    for server in servers:
        server.config_resetstat()
    cpu_before = cpu_seconds(pid)
    out = wrk.run(argv)
    cpu = cpu_seconds(pid) - cpu_before
    commands = commands_of(servers, redis)
    for server in servers:
        if server is not redis:
            server.close()
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


def warm(w: World, target: Target, passes: int = WARM_PASSES) -> None:
    """Every key the target reads is in the cache before the measured run, in
    L1 with its answer: ``passes`` reads each (the first fills Redis, whose
    tracking echo drops L1's copy; the second fills L1; the third keeps the
    answer rendered beside the entry). The peers app fills its keys itself
    before it serves, and nothing else writes them: it needs no warm-up."""
    if target.url.startswith(w.peers):
        return
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
        # aiohttp alone answering the user read's shape from a dict (the same
        # request bytes, token included, unread): what aiohttp itself costs
        Target("aiohttp alone: a user's answer kept in a dict", w.peers + "/kept/{id}", auth),
    ]
    workers, topologies = [], []
    for label, base in w.hita.items():
        user = Target(f"HITA `GET /v1.0/user/{{id}}`{label}", base + "/v1.0/user/{id}", auth)
        if "--workers" in label:
            workers.append(user)
            continue
        if w.redis_of[base] != "standalone":  # the user route on each topology, last
            topologies.append(user)
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
    standalone = [label for label in w.hita_labels if w.redis_of[w.hita[label]] == "standalone"]
    last = standalone[-2] if len(standalone) > 1 else ""  # the single-process L1 on
    if last in w.hita:
        name = f"HITA `GET /v1.0/user/{{id}}`{last}, {MANY_CONNECTIONS} connections"
        found.append(Target(name, w.hita[last] + "/v1.0/user/{id}", auth, MANY_CONNECTIONS))
        # HITA's floor: the same process answering a constant, public route (no
        # token, no cache): aiohttp, the route table and the front
        # with its access line and metrics; the user route's rest is the token
        # check and the L1 read.
        found.append(Target(f"HITA `GET /v1.0/health/live`{last} (floor)", w.hita[last] + LIVE))
    return found + topologies + workers
