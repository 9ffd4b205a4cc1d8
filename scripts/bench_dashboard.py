"""Benchmark the dashboard statistics: straight from SQL versus from the cache.

For each size in ``--sizes`` (default 10k, 100k and 1M users) the data set is
topped up with realistic users and points histories (a private embedded
PostgreSQL under ``.hita/bench/``, or ``DATABASE_URL``), then every measured
path runs ``--runs`` times after a few warm-up runs, all in one process, one
after the other, so the paths are compared as ratios of medians taken on the
same machine at the same moment. Redis is a private embedded one (or
``REDIS_URL``). Results go to ``docs/benchmarks.md`` with the command used.

    python scripts/bench_dashboard.py [--sizes 10000,100000,1000000] [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, closing, contextmanager
from typing import Final

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from hita.app import create_app
from hita.cache.client import RedisCache
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.config import PROJECT_ROOT, Config, load_config
from hita.db.database import Database, open_database
from hita.devsecret import with_jwt_secret
from hita.domain.roles import Role
from hita.embedded import EmbeddedPostgres, EmbeddedRedis
from hita.services import seeding
from hita.services.cache_keys import CacheKeys
from hita.services.cached_users import CachedUserService
from hita.services.passwords import Passwords
from hita.services.tokens import Tokens
from hita.services.users import UserService

from harness.bench import BENCH_ROOT
from harness.reports import BENCHMARKS, command_line, write_section
from harness.reports import facts as run_facts

WARMUP_RUNS: Final = 3
SEED: Final = 20_241_217  # the same data set every run
DEFAULT_SIZES: Final = "10000,100000,1000000"

Measure = Callable[[], Awaitable[object]]


@dataclasses.dataclass(frozen=True)
class Result:
    users: int
    path: str
    runs: int
    median_ms: float
    p95_ms: float


@dataclasses.dataclass
class Bench:
    """Everything a measured path needs, for one data set size."""

    database: Database
    plain: UserService
    cached: CachedUserService
    http: aiohttp.ClientSession
    base_url: str
    admin_headers: dict[str, str]

    async def invalidate_dashboard(self) -> None:
        await self.cached.keys.invalidate(["dashboard_stats"], cause="bench")

    def paths(self) -> dict[str, tuple[Measure, Measure | None]]:
        """name -> (the call measured, an untimed call before each run)."""
        url = f"{self.base_url}/v1.0/dashboard/stats"

        async def get() -> object:
            async with self.http.get(url, headers=self.admin_headers) as response:
                response.raise_for_status()
                return await response.read()

        return {
            "dashboard stats, SQL (service, no cache)": (self.plain.dashboard_stats, None),
            "dashboard stats, cache hit (service)": (self.cached.dashboard_stats, None),
            "user stats, SQL (service, no cache)": (self.plain.user_stats, None),
            "user stats, cache hit (service)": (self.cached.user_stats, None),
            "GET /v1.0/dashboard/stats, cache miss (HTTP)": (get, self.invalidate_dashboard),
            "GET /v1.0/dashboard/stats, cache hit (HTTP)": (get, None),
        }


@contextmanager
def servers(config: Config) -> Iterator[Config]:
    """Private PostgreSQL and Redis unless the configuration names real ones."""
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        if config.database.url is None:
            postgres = EmbeddedPostgres(BENCH_ROOT / "postgres", database="hita_bench")
            postgres.start()
            started.append(postgres)
            postgres.create_database("hita_bench", drop_first=True)
            database = dataclasses.replace(config.database, url=postgres.url, auto_migrate=True)
            config = dataclasses.replace(config, database=database)
        if config.redis.url is None:
            redis = EmbeddedRedis(BENCH_ROOT / "redis")
            redis.start()
            started.append(redis)
            config = dataclasses.replace(
                config, redis=dataclasses.replace(config.redis, url=redis.url)
            )
        yield config
    finally:
        for server in reversed(started):
            server.stop()


async def top_up(database: Database, config: Config, users: int, rng: random.Random) -> float:
    """Seed up to ``users`` users; the seconds it took (0 when there were enough)."""
    missing = users - await database.fetchval("SELECT count(*) FROM users")
    if missing <= 0:
        return 0.0
    started = time.perf_counter()
    with closing(Passwords(config.auth, workers=1)) as passwords:
        password = seeding.new_demo_password()
        password_hash = await passwords.hash(password)
    await seeding.seed(database, missing, password, password_hash, rng=rng)
    return time.perf_counter() - started


async def measure(users: int, path: str, run: Measure, before: Measure | None, runs: int) -> Result:
    for _ in range(WARMUP_RUNS):
        if before:
            await before()
        await run()
    samples = []
    for _ in range(runs):
        if before:
            await before()
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(samples, n=100, method="inclusive")[94]
    return Result(users, path, runs, statistics.median(samples), p95)


@asynccontextmanager
async def bench_context(config: Config) -> AsyncIterator[Bench]:
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(open_database(config.database))
        passwords = stack.enter_context(closing(Passwords(config.auth, workers=1)))
        cache = RedisCache(create_redis(config.redis), config.cache, KeyBuilder())
        stack.push_async_callback(cache.aclose)
        app: web.Application = create_app(config)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        stack.push_async_callback(server.close)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        admin_id = await database.fetchval(
            "SELECT id FROM users WHERE role = 'admin' AND is_active ORDER BY id LIMIT 1"
        )
        token = Tokens(config.auth).issue(admin_id, Role.ADMIN)
        yield Bench(
            database=database,
            plain=UserService(database, passwords),
            cached=CachedUserService(database, passwords, CacheKeys(cache), config.cache.ttls),
            http=http,
            base_url=str(server.make_url("")).rstrip("/"),
            admin_headers={"Authorization": f"Bearer {token}"},
        )


async def bench(config: Config, sizes: list[int], runs: int) -> tuple[list[Result], dict[str, str]]:
    results: list[Result] = []
    seeding_times = []
    rng = random.Random(SEED)  # a reproducible data set, not secrets
    async with open_database(config.database) as database:
        for size in sizes:
            seeded = await top_up(database, config, size, rng)
            seeding_times.append(f"{size:,} users: {seeded:.1f} s" if seeded else f"{size:,}: -")
            async with bench_context(config) as context:
                count = await database.fetchval("SELECT count(*) FROM users")
                for path, (run, before) in context.paths().items():
                    results.append(await measure(count, path, run, before, runs))
                    print(
                        f"{count:>9,} users  {results[-1].path}: "
                        f"median {results[-1].median_ms:.2f} ms",
                        flush=True,
                    )
        facts = {
            **run_facts(),
            "PostgreSQL": str(await database.fetchval("SHOW server_version")),
            "points transactions at the largest size": str(
                await database.fetchval("SELECT count(*) FROM points_transactions")
            ),
            "seeding": "; ".join(seeding_times),
        }
    return results, facts


def ratio_rows(results: list[Result]) -> list[str]:
    by = {(r.users, r.path): r for r in results}
    rows = []
    for users in sorted({r.users for r in results}):
        sql = by[users, "dashboard stats, SQL (service, no cache)"].median_ms
        hit = by[users, "dashboard stats, cache hit (service)"].median_ms
        miss = by[users, "GET /v1.0/dashboard/stats, cache miss (HTTP)"].median_ms
        http_hit = by[users, "GET /v1.0/dashboard/stats, cache hit (HTTP)"].median_ms
        rows.append(
            f"| {users:,} | {sql:.2f} | {hit:.3f} | **{sql / hit:,.0f}x** |"
            f" {miss:.2f} | {http_hit:.2f} | {miss / http_hit:,.0f}x |"
        )
    return rows


HEADING: Final = "Dashboard statistics: cache versus SQL (scripts/bench_dashboard.py)"


def report(results: list[Result], facts: dict[str, str], command: str) -> str:
    return "\n".join(
        [
            f"Command: `{command}` (what `make bench` runs)",
            "",
            *(f"- {name}: {value}" for name, value in facts.items()),
            "",
            "Medians, same run:",
            "",
            "| users | SQL (ms) | cache hit (ms) | ratio | HTTP miss (ms) | HTTP hit (ms) |"
            " HTTP ratio |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *ratio_rows(results),
            "",
            "The service-level ratio is `CachedUserService.dashboard_stats()` on a hit",
            "against `UserService.dashboard_stats()` (the four dashboard queries in one",
            "repeatable-read transaction). The HTTP columns are whole requests to the",
            "running app on 127.0.0.1 (token check, routing, JSON): a miss is measured",
            "right after invalidating the dashboard namespace, so it pays the SQL.",
            "",
            "### Every path",
            "",
            "| users | path | runs | median (ms) | p95 (ms) |",
            "| ---: | --- | ---: | ---: | ---: |",
            *(
                f"| {r.users:,} | {r.path} | {r.runs} | {r.median_ms:.3f} | {r.p95_ms:.3f} |"
                for r in results
            ),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=DEFAULT_SIZES, help="comma-separated user counts, ascending"
    )
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    environ = dict(os.environ)
    environ.setdefault("HITA_ENV", "development")
    environ.update(WARMUP_ON_START="false", STATS_REFRESH_ENABLED="false", LOG_LEVEL="WARNING")
    config = with_jwt_secret(load_config(environ))
    with servers(config) as resolved:
        results, found = asyncio.run(bench(resolved, sizes, args.runs))
    write_section(HEADING, report(results, found, command_line("bench_dashboard.py")))
    print(f"written to {BENCHMARKS.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
