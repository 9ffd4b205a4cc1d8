"""Benchmark the dashboard statistics on a realistic data set.

Seeds ``--users`` users (default 100 000) with their points histories into a
private embedded PostgreSQL under ``.hita/bench/`` (a fresh database each
run), or into ``DATABASE_URL`` when it is set (topped up to ``--users``),
then times each measured path ``--runs`` times after a few warm-up runs and
writes the median and p95 to ``docs/benchmarks.md`` with the command used.

Each measured path is one function in ``PATHS``; the cache issue adds its
cached paths there, next to the SQL ones, so the table compares them.

    python scripts/bench_dashboard.py [--users 100000] [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Final

from hita.config import PROJECT_ROOT, Config, load_config
from hita.db.database import Database, open_database
from hita.embedded import EmbeddedPostgres
from hita.services import seeding, stats
from hita.services.passwords import Passwords

BENCH_ROOT: Final = PROJECT_ROOT / ".hita" / "bench"
REPORT: Final = PROJECT_ROOT / "docs" / "benchmarks.md"
WARMUP_RUNS: Final = 3
SEED: Final = 20_241_217  # the same data set every run

Measure = Callable[[Database], Awaitable[object]]


async def dashboard_stats_sql(database: Database) -> object:
    """Every dashboard figure straight from PostgreSQL (what a cache miss costs)."""
    return await stats.dashboard_stats(database)


async def user_stats_sql(database: Database) -> object:
    """The user statistics straight from PostgreSQL."""
    return await stats.user_stats(database)


PATHS: Final[dict[str, Measure]] = {
    "dashboard stats, SQL": dashboard_stats_sql,
    "user stats, SQL": user_stats_sql,
}


@dataclasses.dataclass(frozen=True)
class Result:
    path: str
    runs: int
    median_ms: float
    p95_ms: float


@contextmanager
def postgres(config: Config) -> Iterator[Config]:
    if config.database.url is not None:
        yield config
        return
    server = EmbeddedPostgres(BENCH_ROOT / "postgres", database="hita_bench")
    server.start()
    try:
        server.create_database("hita_bench", drop_first=True)
        database = dataclasses.replace(config.database, url=server.url, auto_migrate=True)
        yield dataclasses.replace(config, database=database)
    finally:
        server.stop()


async def top_up(database: Database, config: Config, users: int) -> float:
    """Seed up to ``users`` users; the seconds it took (0 when there were enough)."""
    missing = users - await database.fetchval("SELECT count(*) FROM users")
    if missing <= 0:
        return 0.0
    started = time.perf_counter()
    passwords = Passwords(config.auth, workers=1)
    try:
        password = seeding.new_demo_password()
        password_hash = await passwords.hash(password)
    finally:
        passwords.close()
    await seeding.seed(
        database,
        missing,
        password,
        password_hash,
        rng=random.Random(SEED),
    )
    return time.perf_counter() - started


async def measure(database: Database, path: str, run: Measure, runs: int) -> Result:
    for _ in range(WARMUP_RUNS):
        await run(database)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await run(database)
        samples.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(samples, n=100, method="inclusive")[94]
    return Result(path, runs, statistics.median(samples), p95)


def report(results: list[Result], facts: dict[str, str], command: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench_dashboard.py` (`make bench`); rerun it to refresh.",
        "",
        f"Command: `{command}`",
        "",
        *(f"- {name}: {value}" for name, value in facts.items()),
        "",
        "| path | runs | median (ms) | p95 (ms) |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {r.path} | {r.runs} | {r.median_ms:.1f} | {r.p95_ms:.1f} |" for r in results),
        "",
        "Times are wall-clock per call from the service's process, over the same",
        "pool the service uses, after warm-up runs; the dashboard runs its four",
        "queries in one repeatable-read transaction.",
        "",
    ]
    return "\n".join(lines)


async def bench(config: Config, users: int, runs: int) -> tuple[list[Result], dict[str, str]]:
    async with open_database(config.database) as database:
        seed_s = await top_up(database, config, users)
        results = [await measure(database, p, fn, runs) for p, fn in PATHS.items()]
        facts = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "Python": platform.python_version(),
            "PostgreSQL": str(await database.fetchval("SHOW server_version")),
            "users": str(await database.fetchval("SELECT count(*) FROM users")),
            "points transactions": str(
                await database.fetchval("SELECT count(*) FROM points_transactions")
            ),
            "seeding": f"{seed_s:.1f} s" if seed_s else "data set already there",
        }
    return results, facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    config = load_config(os.environ)
    with postgres(config) as resolved:
        results, facts = asyncio.run(bench(resolved, args.users, args.runs))
    command = shlex.join(["python", "scripts/bench_dashboard.py", *sys.argv[1:]])
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report(results, facts, command))
    for r in results:
        print(f"{r.path}: median {r.median_ms:.1f} ms, p95 {r.p95_ms:.1f} ms ({r.runs} runs)")
    print(f"written to {REPORT.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
