"""PostgreSQL behind PgBouncer in transaction mode (Debian's ``pgbouncer``).

* The coherence and read-your-writes files pass with every app's pool going
  through PgBouncer in transaction mode (their reader sessions direct, on
  DATABASE_READER_URL), run as a pytest of their own with TEST_PGBOUNCER.
* A pool through it needs DB_STATEMENT_CACHE_SIZE=0 (control: asyncpg's
  default cache of named statements fails there).
* A reader session whose LISTEN goes through transaction pooling is found
  deaf within the probe's bound, says so in health and metrics, and still
  renews its lease and confirms a waiting writer, by its periodic renewals
  (control: a direct session is not deaf).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from typing import Final

import pytest
from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.appkeys import CACHE, COHERENCE
from hita.config import PROJECT_ROOT, Config
from hita.db.database import close_pool, create_pool
from tests.conftest import make_config
from tests.integration.conftest import until
from tests.pgbouncer import PgBouncer

pytestmark = pytest.mark.slow

FILES: Final = ("tests/integration/test_coherence.py", "tests/integration/test_read_your_writes.py")
RUN_TIMEOUT_S: Final = 900


def test_the_coherence_and_read_your_writes_files_pass_through_pgbouncer_transaction_mode(
    pgbouncer: PgBouncer, database_url: str, redis_url: str
) -> None:
    """The files run with their own servers' settings (this session's
    PostgreSQL and Redis, idle meanwhile), pooled through a PgBouncer of
    their own; their session checks that PgBouncer served their transactions."""
    if os.environ.get("TEST_PGBOUNCER"):
        pytest.skip("this is the child run through PgBouncer: it would start itself again")
    env = {
        **os.environ,
        "TEST_PGBOUNCER": "transaction",
        "TEST_DATABASE_URL": database_url,
        "TEST_REDIS_URL": redis_url,
    }
    done = subprocess.run(  # a child pytest, bounded
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *FILES],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "PgBouncer (transaction mode) served" in done.stdout
    assert " passed" in summary
    assert "failed" not in summary
    assert "skipped" not in summary
    assert "error" not in summary


async def failed_fetches(config: Config) -> int:
    """Of 200 concurrent one-statement queries on a pool made from ``config``."""
    pool = await create_pool(config.database)
    try:
        results = await asyncio.gather(
            *(pool.fetchval("SELECT $1::int + 1", i) for i in range(200)), return_exceptions=True
        )
    finally:
        await close_pool(pool)
    return sum(isinstance(r, Exception) for r in results)


async def test_a_pool_through_transaction_pooling_needs_no_statement_cache(
    pgbouncer: PgBouncer, clean_database: str, database_url: str
) -> None:
    config = make_config(DATABASE_URL=pgbouncer.url_for(database_url))
    database = dataclasses.replace(config.database, statement_cache_size=0)
    assert await failed_fetches(dataclasses.replace(config, database=database)) == 0
    # Control: asyncpg's named statements, prepared on one server connection,
    # are looked for on another.
    cached = dataclasses.replace(config.database, statement_cache_size=100)
    assert await failed_fetches(dataclasses.replace(config, database=cached)) > 0


async def listen_state(
    aiohttp_client: AiohttpClient, clean_database: str, redis_url: str, reader_url: str
) -> tuple[str, str, bool]:
    """An app whose reader session connects to ``reader_url``: what its health
    says of notifications, its metric, and whether a waiting writer is
    confirmed by the readers."""
    config = make_config(
        DATABASE_URL=clean_database, REDIS_URL=redis_url, DATABASE_READER_URL=reader_url
    )
    app = create_app(config)
    client = await aiohttp_client(app)
    coherence = app[COHERENCE]
    await until(lambda: coherence.session.probe.deaf is not None, "no probe was judged")
    body = await (await client.get("/v1.0/health")).json()
    metrics = await (await client.get("/metrics")).text()
    line = next(m for m in metrics.splitlines() if m.startswith("hita_coherence_listen_deaf "))
    assert app[CACHE].pending.trusted  # its lease renews all the same
    confirmed = await coherence.confirm_delivery()
    return body["notifications"]["status"], line.split()[-1], confirmed


async def test_a_listen_through_transaction_pooling_is_found_deaf(
    aiohttp_client: AiohttpClient,
    pgbouncer: PgBouncer,
    clean_database: str,
    clean_redis: str,
    database_url: str,
) -> None:
    status, metric, confirmed = await listen_state(
        aiohttp_client, clean_database, clean_redis, pgbouncer.url_for(database_url)
    )
    assert (status, metric) == ("deaf", "1.0")
    assert confirmed  # a writer's wait ends by the readers' periodic renewals


async def test_control_a_direct_reader_session_is_not_deaf(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str, database_url: str
) -> None:
    status, metric, confirmed = await listen_state(
        aiohttp_client, clean_database, clean_redis, database_url
    )
    assert (status, metric, confirmed) == ("ok", "0.0", True)
