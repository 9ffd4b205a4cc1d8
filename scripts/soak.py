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
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
from redis.asyncio import Redis

from hita.config import PROJECT_ROOT
from hita.embedded import EmbeddedPostgres, EmbeddedRedis

from harness import procs
from harness.ports import free_port
from harness.reports import command_line
from harness.reports import facts as run_facts
from harness.service import accounts, seeded_service
from harness.waits import wait_up
from soak_report import (
    REPORT,
    Sample,
    Window,
    fds,
    http_connections,
    quantile,
    report,
    rss_mb,
    service_figures,
    write_report,
)

SOAK_ROOT: Final = PROJECT_ROOT / ".hita" / "soak"
REQUEST_TIMEOUT_S: Final = 10.0
MAX_IN_FLIGHT: Final = 500  # the sender's own bound; past it a request is counted as dropped
CLIENT_CONNECTIONS: Final = 64  # like a load balancer's pool: more requests queue in the client
SNAPSHOT_WAIT_S: Final = 30.0
USERS_WITH_TOKENS: Final = 300


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
            rss_mb=rss_mb(pid),
            fds=fds(pid),
            http_conns=http_connections(self.port),
            redis_conns=await self.redis_connections(),
            pg_conns=int(pg_conns),
            requests=sum(window.statuses.values()),
            server_errors=sum(n for s, n in window.statuses.items() if s.startswith("5")),
            p50_ms=quantile(latencies, 0.5),
            p99_ms=quantile(latencies, 0.99),
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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _name(rng: random.Random) -> str:
    return f"Soak Guest {rng.randint(1, 10**6)}"


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
    growth = ""
    if snapshot_path is not None:
        await snapshot()
        growth = await asyncio.to_thread(_read_or, snapshot_path, "(no snapshot)")
    return {"tracemalloc": growth, "service": service_figures(text)}


def _read_or(path: Path, default: str) -> str:
    return path.read_text() if path.exists() else default


def main() -> int:
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
    args = parser.parse_args()

    root = SOAK_ROOT / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True)
    postgres = EmbeddedPostgres(root / "postgres", database="hita_soak", durable=False)
    redis = EmbeddedRedis(root / "redis")
    port = free_port()
    server: subprocess.Popen[bytes] | None = None
    try:
        postgres.start()
        postgres.create_database("hita_soak", drop_first=True)
        redis.start()
        env, secret = seeded_service(
            database_url=postgres.url,
            redis_url=redis.url,
            data_dir=root,
            port=port,
            env_items=args.env,
            users=args.users,
        )
        snapshot_path = root / "tracemalloc.txt" if args.tracemalloc else None
        argv = [sys.executable, str(Path(__file__).with_name("soak_serve.py"))]
        argv.append(str(snapshot_path or ""))
        server = procs.start(argv, env, root / "service.log")
        base_url = f"http://127.0.0.1:{port}"
        wait_up(f"{base_url}/v1.0/health", child=server)
        admin, users, everyone = asyncio.run(accounts(postgres.url, secret, USERS_WITH_TOKENS))
        soak = Soak(
            args,
            base_url,
            port,
            server,
            redis,
            postgres.url,
            bearer(admin),
            [(user_id, bearer(token)) for user_id, token in users],
            everyone,
        )
        print(f"soaking for {args.minutes} min at {args.rate}/s; service pid {server.pid}")
        extra = asyncio.run(run_soak(soak, snapshot_path))
        procs.stop(server, signal.SIGINT)
        log_text = (root / "service.log").read_text(errors="replace")
        facts = {
            **run_facts(),
            "duration": f"{args.minutes} min at {args.rate:g} requests/s, {args.users} users",
            "service log": f"{log_text.count(' ERROR ')} ERROR lines, "
            f"{log_text.count(' WARNING ')} WARNING lines",
        }
        section = report(soak, command_line("soak.py"), facts, extra)
        print(section)
        if not args.no_report:
            write_report(section)
            print(f"written to {REPORT.relative_to(PROJECT_ROOT)}")
    finally:
        if server is not None:
            procs.stop(server, signal.SIGKILL)
        redis.stop()
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
