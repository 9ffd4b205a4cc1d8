"""Soak test: the service under steady mixed load for a long time, with Redis
paused and restarted now and then, watching memory, descriptors and connections.

A private PostgreSQL and Redis are started under ``.hita/soak/``, ``--users``
realistic users are seeded, and the service runs as its own process (the
production profile, logging at WARNING) so that its RSS and descriptors are
its own. Requests (reads and writes, about one in four a write) are sent to
127.0.0.1 at a fixed rate, open loop: a slow answer does not slow the sender.
Every ``--fault-every`` seconds Redis is, in turn, paused (SIGSTOP) for
``--fault-seconds`` or stopped and restarted after that long. Every
``--sample-every`` seconds the script records the service's RSS and open
descriptors, its Redis connections (CLIENT LIST), its PostgreSQL connections
(pg_stat_activity) and the answers of the window. The report, with start, end
and slope (least squares over the samples after ``--settle-minutes``, 5), is
written between markers into ``docs/soak.md``, keeping the text around them.

With ``--tracemalloc`` the service traces its allocations and the report
lists the lines whose memory grew most from that mark to the end.

    python scripts/soak.py [--minutes 30] [--rate 100] [--users 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from hita.cli import main as hita_main
from hita.config import PROJECT_ROOT, Config, load_config
from hita.db.database import open_database
from hita.domain.roles import Role
from hita.embedded import EmbeddedPostgres, EmbeddedRedis
from hita.services import seeding
from hita.services.passwords import Passwords
from hita.services.tokens import Tokens

SOAK_ROOT: Final = PROJECT_ROOT / ".hita" / "soak"
REPORT: Final = PROJECT_ROOT / "docs" / "soak.md"
BEGIN: Final = "<!-- soak:begin (written by scripts/soak.py) -->"
END: Final = "<!-- soak:end -->"
REQUEST_TIMEOUT_S: Final = 10.0
MAX_IN_FLIGHT: Final = 500  # the sender's own bound; past it a request is counted as dropped
CLIENT_CONNECTIONS: Final = 64  # like a load balancer's pool: more requests queue in the client
START_TIMEOUT_S: Final = 60.0
SNAPSHOT_WAIT_S: Final = 30.0
# The service's own counters reported at the end (from /metrics).
SERVICE_FIGURES: Final = frozenset(
    {
        "hita_overload_refusals_total",
        "hita_http_client_disconnects_total",
        "hita_http_in_flight_peak",
        "hita_db_queue_waits_total",
        "hita_cache_breaker_transitions_total",
        "hita_cache_errors_total",
    }
)
USERS_WITH_TOKENS: Final = 300
TOP_ALLOCATIONS: Final = 12


# -- the service process (``--serve``) ------------------------------------------


def serve(tracemalloc_out: str | None) -> int:
    """Run ``hita serve``; with tracing, SIGUSR1 takes a snapshot: the first
    one is the baseline, each later one writes the growth since it."""
    if tracemalloc_out:
        tracemalloc.start(1)
        baseline: list[tracemalloc.Snapshot] = []

        def snapshot(_signum: int, _frame: FrameType | None) -> None:
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            if not baseline:
                baseline.append(snap)
                text = f"baseline traced={tracemalloc.get_traced_memory()[0]}\n"
            else:
                stats = snap.compare_to(baseline[0], "lineno")[:TOP_ALLOCATIONS]
                current = tracemalloc.get_traced_memory()[0]
                text = f"traced={current}\n" + "\n".join(str(s) for s in stats) + "\n"
            Path(tracemalloc_out).write_text(text)

        signal.signal(signal.SIGUSR1, snapshot)
    return hita_main(["serve"])


# -- measurements ---------------------------------------------------------------


@dataclass
class Window:
    """Answers since the last sample (kept per window so the sender stays flat)."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    dropped: int = 0

    def record(self, status: str, elapsed_s: float) -> None:
        self.statuses[status] += 1
        self.latencies_ms.append(elapsed_s * 1000)


@dataclass(frozen=True)
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    http_conns: int
    redis_conns: int | None
    pg_conns: int
    requests: int
    server_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    redis: str


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _http_connections(port: int) -> int:
    """Established TCP connections to the service's port (the client's keep-alive
    pool grows with the peak of concurrent requests: descriptors, not a leak)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return 0.0 if var == 0 else cov / var * 60


# -- the run --------------------------------------------------------------------


@dataclass
class Soak:
    args: argparse.Namespace
    base_url: str
    port: int
    server: subprocess.Popen[bytes]
    redis: EmbeddedRedis
    pg_url: str
    admin_headers: dict[str, str]
    users: list[tuple[str, dict[str, str]]]  # (user id, its headers)
    all_ids: list[str]
    window: Window = field(default_factory=Window)
    totals: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    redis_state: str = "up"
    idle: Sample | None = None  # 5 s after the load stopped
    started: float = field(default_factory=time.monotonic)
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def pick_request(self) -> tuple[str, str, dict[str, str], dict[str, Any] | None]:
        """(method, path, headers, json body): about a quarter are writes."""
        rng = self.rng
        user_id, headers = rng.choice(self.users)
        other = rng.choice(self.all_ids)
        roll = rng.random()
        p = "/v1.0"
        choices: list[tuple[float, tuple[str, str, dict[str, str], dict[str, Any] | None]]] = [
            (0.30, ("GET", f"{p}/user/{user_id}", headers, None)),
            (0.15, ("GET", f"{p}/user/{other}", self.admin_headers, None)),
            (0.08, ("GET", f"{p}/user/list?page={rng.randint(1, 5)}", self.admin_headers, None)),
            (0.08, ("GET", f"{p}/permissions/{user_id}", headers, None)),
            (0.05, ("GET", f"{p}/points/{user_id}/history", headers, None)),
            (0.05, ("GET", f"{p}/dashboard/stats", self.admin_headers, None)),
            (0.03, ("GET", f"{p}/user/stats", self.admin_headers, None)),
            (0.10, ("PATCH", f"{p}/user/update/{user_id}", headers, {"full_name": _name(rng)})),
            (
                0.10,
                (
                    "POST",
                    f"{p}/points/{other}/add",
                    self.admin_headers,
                    {"amount": 1, "reason": "soak"},
                ),
            ),
            (
                0.06,
                (
                    "POST",
                    f"{p}/permissions/{other}/{rng.choice(('grant', 'revoke'))}",
                    self.admin_headers,
                    {"permission": "reports.read"},
                ),
            ),
        ]
        for weight, request in choices:
            roll -= weight
            if roll < 0:
                return request
        return choices[0][1]

    async def one(self, http: aiohttp.ClientSession, sem: asyncio.Semaphore) -> None:
        method, path, headers, body = self.pick_request()
        started = time.monotonic()
        try:
            async with http.request(
                method, self.base_url + path, headers=headers, json=body
            ) as response:
                raw = await response.read()
                status = str(response.status)
                if response.status >= 500:  # which 5xx: overloaded, database, ...
                    status += f" {_error_of(raw)}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = f"client:{exc.__class__.__name__}"
        finally:
            sem.release()
        self.window.record(status, time.monotonic() - started)
        self.totals[status] += 1

    async def send(self, http: aiohttp.ClientSession, until: float) -> None:
        """Open loop at ``--rate`` requests per second."""
        sem = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.args.rate
        next_at = time.monotonic()
        while time.monotonic() < until:
            if sem.locked():
                self.window.dropped += 1
                self.totals["dropped"] += 1
            else:
                await sem.acquire()
                task = asyncio.create_task(self.one(http, sem))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks, return_exceptions=True)

    async def faults(self, until: float) -> None:
        """Pause Redis, later stop and restart it, in turn."""
        pause = True
        while True:
            await asyncio.sleep(min(self.args.fault_every, max(0.0, until - time.monotonic())))
            if time.monotonic() + self.args.fault_seconds > until:
                return
            kind = "paused" if pause else "stopped"
            self.events.append(f"{self.elapsed() / 60:.1f} min: Redis {kind}")
            self.redis_state = kind
            if pause:
                self.redis.process.pause()
                await asyncio.sleep(self.args.fault_seconds)
                self.redis.process.resume()
            else:
                await asyncio.to_thread(self.redis.stop)
                await asyncio.sleep(self.args.fault_seconds)
                await asyncio.to_thread(self.redis.start)
            self.redis_state = "up"
            self.events.append(f"{self.elapsed() / 60:.1f} min: Redis back")
            pause = not pause

    async def redis_connections(self) -> int | None:
        client = Redis.from_url(self.redis.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            clients = await client.client_list()
            return sum(1 for c in clients if c.get("name") == "hita")
        except Exception:  # paused or stopped: no figure
            return None
        finally:
            await client.aclose()

    async def sample(self, pg: asyncpg.Connection) -> Sample:
        window, self.window = self.window, Window()
        pid = self.server.pid
        pg_conns = await pg.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        latencies = window.latencies_ms
        sample = Sample(
            t_s=self.elapsed(),
            rss_mb=_rss_mb(pid),
            fds=_fds(pid),
            http_conns=_http_connections(self.port),
            redis_conns=await self.redis_connections(),
            pg_conns=int(pg_conns),
            requests=sum(window.statuses.values()),
            server_errors=sum(n for s, n in window.statuses.items() if s.startswith("5")),
            p50_ms=_quantile(latencies, 0.5),
            p99_ms=_quantile(latencies, 0.99),
            max_ms=max(latencies, default=0.0),
            redis=self.redis_state,
        )
        self.samples.append(sample)
        print(
            f"{sample.t_s / 60:6.1f} min  rss {sample.rss_mb:6.1f} MB  fds {sample.fds:3d}"
            f"  http {sample.http_conns:3d}  redis {sample.redis_conns!s:>4}"
            f"  pg {sample.pg_conns:2d}"
            f"  req {sample.requests:5d}  5xx {sample.server_errors}"
            f"  p99 {sample.p99_ms:7.1f} ms  ({sample.redis})",
            flush=True,
        )
        return sample

    async def sampler(self, until: float, snapshot: Callable[[], Awaitable[None]]) -> None:
        async with contextlib.AsyncExitStack() as stack:
            pg = await asyncpg.connect(self.pg_url)
            stack.push_async_callback(pg.close)
            snapped = False
            while time.monotonic() < until:
                await asyncio.sleep(min(self.args.sample_every, max(0.0, until - time.monotonic())))
                await self.sample(pg)
                if not snapped and self.elapsed() >= self.args.settle_minutes * 60:
                    await snapshot()
                    snapped = True


def _error_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", "?"))
    except ValueError:
        return "?"


def _name(rng: random.Random) -> str:
    return f"Soak Guest {rng.randint(1, 10**6)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def prepare(config: Config, users: int) -> None:
    async with open_database(config.database) as database:
        with contextlib.closing(Passwords(config.auth, workers=1)) as passwords:
            password = seeding.new_demo_password()
            password_hash = await passwords.hash(password)
        await seeding.seed(database, users, password, password_hash, rng=random.Random(7))


async def accounts(
    pg_url: str, tokens: Tokens
) -> tuple[dict[str, str], list[tuple[str, dict[str, str]]], list[str]]:
    conn = await asyncpg.connect(pg_url)
    try:
        admin = await conn.fetchval(
            "SELECT id FROM users WHERE role = 'admin' AND is_active ORDER BY id LIMIT 1"
        )
        rows = await conn.fetch(
            "SELECT id FROM users WHERE role = 'user' AND is_active ORDER BY id LIMIT $1",
            USERS_WITH_TOKENS,
        )
        everyone = [r["id"] for r in await conn.fetch("SELECT id FROM users WHERE role = 'user'")]
    finally:
        await conn.close()

    def headers(user_id: str, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(user_id, role)}"}

    users = [(r["id"], headers(r["id"], Role.USER)) for r in rows]
    return headers(admin, Role.ADMIN), users, everyone


async def wait_healthy(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError("the service exited during start-up; see its log")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base_url}/v1.0/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError("the service did not answer within a minute")


async def run_soak(soak: Soak, snapshot_path: Path | None) -> dict[str, str]:
    until = soak.started + soak.args.minutes * 60

    def take_snapshot() -> None:
        if snapshot_path is None:
            return
        snapshot_path.unlink(missing_ok=True)
        soak.server.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + SNAPSHOT_WAIT_S
        while not snapshot_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    async def snapshot() -> None:
        await asyncio.to_thread(take_snapshot)

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        await asyncio.gather(
            soak.send(http, until), soak.faults(until), soak.sampler(until, snapshot)
        )
    # Idle for a moment: what is left open once the load stops.
    await asyncio.sleep(5)
    pg = await asyncpg.connect(soak.pg_url)
    try:
        soak.idle = await soak.sample(pg)
        soak.samples.pop()  # reported apart: slopes are over the loaded samples
    finally:
        await pg.close()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{soak.base_url}/metrics") as response,
    ):
        text = await response.text()
    figures = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in SERVICE_FIGURES and sample.value:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                figures.append(f"{sample.name}{{{labels}}} {sample.value:g}")
    growth = ""
    if snapshot_path is not None:
        await snapshot()
        growth = await asyncio.to_thread(_read_or, snapshot_path, "(no snapshot)")
    return {"tracemalloc": growth, "service": "\n".join(figures)}


def _read_or(path: Path, default: str) -> str:
    return path.read_text() if path.exists() else default


def report(soak: Soak, command: str, facts: dict[str, str], extra: dict[str, str]) -> str:
    samples = soak.samples
    settled = [s for s in samples if s.t_s >= soak.args.settle_minutes * 60]
    first, last = (settled[0], settled[-1]) if settled else (samples[0], samples[-1])

    def row(name: str, unit: str, get: Callable[[Sample], float | None]) -> str:
        points = [(s.t_s, v) for s in settled if (v := get(s)) is not None]
        values = [v for _, v in points]
        start = get(samples[0])
        end = get(last)
        at5 = get(first)
        idle = "" if soak.idle is None else get(soak.idle)
        return (
            f"| {name} | {start} | {at5} | {end} | {idle} | "
            f"{slope_per_min(points):+.4f} {unit}/min | "
            f"{min(values, default=0)} to {max(values, default=0)} |"
        )

    settle = soak.args.settle_minutes
    total = sum(v for k, v in soak.totals.items() if k != "dropped")
    five_xx = sum(v for k, v in soak.totals.items() if k.startswith("5"))
    lines = [
        BEGIN,
        "",
        f"Command: `{command}`",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        f"- requests answered: {total:,}; 5xx: {five_xx}; dropped by the sender: "
        f"{soak.totals['dropped']}",
        f"- answers: {', '.join(f'{k}: {v:,}' for k, v in sorted(soak.totals.items()))}",
        f"- Redis faults: {'; '.join(soak.events) or 'none'}",
        "",
        f"| figure | first sample | at {settle:g} min | end of load | 5 s after |"
        f" slope after {settle:g} min | range after {settle:g} min |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        row("RSS (MB)", "MB", lambda s: round(s.rss_mb, 1)),
        row("open descriptors", "fds", lambda s: s.fds),
        row("HTTP connections", "conns", lambda s: s.http_conns),
        row("Redis connections", "conns", lambda s: s.redis_conns),
        row("PostgreSQL connections", "conns", lambda s: s.pg_conns),
        "",
        "Samples (one a minute; Redis connections are blank while Redis is paused or down):",
        "",
        "| min | RSS (MB) | fds | HTTP conns | Redis conns | PG conns | requests | 5xx | p50 (ms) |"
        " p99 (ms) | max (ms) | Redis |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    per_minute = max(1, round(60 / soak.args.sample_every))
    for i, s in enumerate(samples):
        if i % per_minute and i != len(samples) - 1:
            continue
        lines.append(
            f"| {s.t_s / 60:.1f} | {s.rss_mb:.1f} | {s.fds} | {s.http_conns} | "
            f"{'' if s.redis_conns is None else s.redis_conns} | {s.pg_conns} | {s.requests} | "
            f"{s.server_errors} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {s.max_ms:.0f} | {s.redis} |"
        )
    if extra.get("service"):
        lines += [
            "",
            "The service's own counters at the end (`/metrics`, non-zero ones):",
            "",
            "```text",
            extra["service"].strip(),
            "```",
        ]
    if extra.get("tracemalloc"):
        lines += [
            "",
            "tracemalloc, growth from the 5-minute mark to the end (top lines):",
            "",
            "```text",
            extra["tracemalloc"].strip(),
            "```",
        ]
    lines += ["", END]
    return "\n".join(lines)


def write_report(section: str) -> None:
    old = REPORT.read_text() if REPORT.exists() else "# Soak\n\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    new = pattern.sub(lambda _: section, old) if pattern.search(old) else f"{old}\n{section}\n"
    REPORT.write_text(new)


def server_env(
    *, pg_url: str, redis_url: str, port: int, root: Path, secret: str, extra: list[str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DB_"))}
    env.update(
        HITA_ENV="production",
        HITA_DATA_DIR=str(root),
        DATABASE_URL=pg_url,
        REDIS_URL=redis_url,
        JWT_SECRET=secret,
        HOST="127.0.0.1",
        PORT=str(port),
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
    )
    for item in extra:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def main() -> int:  # noqa: PLR0915 - one straight sequence: servers, service, load, report
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--fault-every", type=float, default=120.0, help="seconds")
    parser.add_argument("--fault-seconds", type=float, default=5.0)
    parser.add_argument(
        "--settle-minutes", type=float, default=5.0, help="slopes are taken after this"
    )
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--tracemalloc", action="store_true", help="trace the service's memory")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the service")
    parser.add_argument("--no-report", action="store_true", help="print only; leave docs alone")
    parser.add_argument("--serve", metavar="SNAPSHOT", nargs="?", const="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve or None)

    root = SOAK_ROOT / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True)
    postgres = EmbeddedPostgres(root / "postgres", database="hita_soak", durable=False)
    redis = EmbeddedRedis(root / "redis")
    secret = secrets.token_urlsafe(48)
    port = free_port()
    server: subprocess.Popen[bytes] | None = None
    try:
        postgres.start()
        postgres.create_database("hita_soak", drop_first=True)
        redis.start()
        env = server_env(
            pg_url=postgres.url,
            redis_url=redis.url,
            port=port,
            root=root,
            secret=secret,
            extra=args.env,
        )
        config = load_config({**env, "HITA_ENV": "development", "DB_AUTO_MIGRATE": "true"})
        print(f"seeding {args.users} users...", flush=True)
        asyncio.run(prepare(config, args.users))
        snapshot_path = root / "tracemalloc.txt" if args.tracemalloc else None
        argv = [sys.executable, __file__, "--serve", str(snapshot_path or "")]
        with (root / "service.log").open("wb") as service_log:
            server = subprocess.Popen(argv, env=env, stdout=service_log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        asyncio.run(wait_healthy(base_url, server))
        admin_headers, users, everyone = asyncio.run(
            accounts(postgres.url, Tokens(load_config(env).auth))
        )
        soak = Soak(
            args, base_url, port, server, redis, postgres.url, admin_headers, users, everyone
        )
        print(f"soaking for {args.minutes} min at {args.rate}/s; service pid {server.pid}")
        extra = asyncio.run(run_soak(soak, snapshot_path))
        server.send_signal(signal.SIGINT)
        server.wait(30)
        log_text = (root / "service.log").read_text(errors="replace")
        facts = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
            "Python": platform.python_version(),
            "duration": f"{args.minutes} min at {args.rate:g} requests/s, {args.users} users",
            "service log": f"{log_text.count(' ERROR ')} ERROR lines, "
            f"{log_text.count(' WARNING ')} WARNING lines",
        }
        command = shlex.join(["python", "scripts/soak.py", *sys.argv[1:]])
        section = report(soak, command, facts, extra)
        print(section)
        if not args.no_report:
            write_report(section)
            print(f"written to {REPORT.relative_to(PROJECT_ROOT)}")
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        redis.stop()
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
