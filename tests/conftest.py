"""Real PostgreSQL and Redis for the whole suite.

``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` name servers to use; otherwise one
embedded PostgreSQL and one embedded Redis are started for the session under
``.hita/test/``. Every test that asks for them starts from empty tables and an
empty Redis database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from hita.config import PROJECT_ROOT, Config, load_config
from hita.db.migrate import apply_migrations
from hita.embedded import EmbeddedPostgres, EmbeddedRedis

TEST_ROOT = PROJECT_ROOT / ".hita" / "test"
# What a test could not run on this machine, printed at the end of the session.
ENVIRONMENT_NOTES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="s", dir=TEST_ROOT))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(session_dir: Path) -> Iterator[EmbeddedPostgres | None]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    server = EmbeddedPostgres(session_dir / "postgres", database="hita_test", durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server: EmbeddedPostgres | None) -> str:
    return postgres_server.url if postgres_server else os.environ["TEST_DATABASE_URL"]


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[EmbeddedRedis | None]:
    if os.environ.get("TEST_REDIS_URL"):
        yield None
        return
    server = EmbeddedRedis(session_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis | None) -> str:
    return redis_server.url if redis_server else os.environ["TEST_REDIS_URL"]


@pytest.fixture(scope="session")
def schema_tables(database_url: str) -> list[str]:
    """A fresh schema with every migration applied, once per session."""
    import asyncio

    async def prepare() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
            await apply_migrations(conn)
            rows = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'schema_migrations' ORDER BY tablename"
            )
            return [r["tablename"] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(prepare())


async def empty_database(database_url: str, tables: list[str]) -> None:
    if tables:
        conn = await asyncpg.connect(database_url)
        try:
            names = ", ".join(f'"{t}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()


async def empty_redis(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
async def clean_database(database_url: str, schema_tables: list[str]) -> str:
    """The test database with every table emptied; returns its URL."""
    await empty_database(database_url, schema_tables)
    return database_url


@pytest.fixture
async def clean_redis(redis_url: str) -> str:
    """The test Redis database, emptied; returns its URL."""
    await empty_redis(redis_url)
    return redis_url


def make_config(**overrides: str) -> Config:
    environ = {"HITA_ENV": "test", "HITA_DATA_DIR": str(TEST_ROOT)}
    environ.update(overrides)
    return load_config(environ)


@pytest.fixture
def config(clean_database: str, clean_redis: str) -> Config:
    return make_config(DATABASE_URL=clean_database, REDIS_URL=clean_redis, DB_AUTO_MIGRATE="false")


@pytest.fixture
def own_redis(session_dir: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server this test owns by PID, to pause, kill and restart."""
    root = Path(tempfile.mkdtemp(prefix="r", dir=session_dir))
    server = EmbeddedRedis(root)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Notes tests leave on what they could not run here (the TLS round trips
    when Debian's redis-server is missing), so a green run says what it left out."""
    notes = config.stash.get(ENVIRONMENT_NOTES, [])
    if notes:
        terminalreporter.section("environment notes")
        for line in notes:
            terminalreporter.write_line(line)
