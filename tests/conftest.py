"""Real PostgreSQL and Redis for the whole suite.

``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` name servers to use; otherwise one
embedded PostgreSQL and one embedded Redis are started for the session under
``.hita/test/``. Every test that asks for them starts from empty tables and an
empty Redis database.

Tests marked ``cluster`` or ``sentinel`` also get, once per session, a local
3-primary + 3-replica Redis Cluster or a master + replica + 3 sentinels
(``tests/topologies.py``). Redis is emptied between tests by SCAN + UNLINK on
every primary, never FLUSHDB, and when the session ends every node's INFO
commandstats must show no KEYS, FLUSHDB or FLUSHALL (and, on the cluster, INFO
errorstats no CROSSSLOT).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import settings
from redis import Redis as SyncRedis

from hita.cache import topology
from hita.cache.connection import RedisClient, create_redis
from hita.config import PROJECT_ROOT, Config, load_config
from hita.db.migrate import apply_migrations
from hita.devsecret import with_jwt_secret
from hita.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.pgbouncer import PgBouncer
from tests.pgbouncer import available as pgbouncer_available
from tests.topologies import RedisClusterServers, SentinelServers

FORBIDDEN_COMMANDS: Final = frozenset({"keys", "flushdb", "flushall"})
TEST_CLIENT_TIMEOUT_S: Final = 5.0  # the tests' own clients: generous, the machine is shared

TEST_ROOT = PROJECT_ROOT / ".hita" / "test"
# What a test could not run on this machine, printed at the end of the session.
ENVIRONMENT_NOTES = pytest.StashKey[list[str]]()

# Property tests check values, not speed: no per-example deadline on a shared,
# noisy machine. `pytest --hypothesis-profile thorough` runs each with many more
# examples, to look for rare cases before CI's random draws meet them.
settings.register_profile("default", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=3000)
settings.load_profile("default")


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
    try:
        yield server
        assert forbidden_calls([server.url]) == {}, "KEYS or FLUSH* reached Redis"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis | None) -> str:
    return redis_server.url if redis_server else os.environ["TEST_REDIS_URL"]


@pytest.fixture(scope="session")
def schema_tables(database_url: str) -> list[str]:
    """A fresh schema with every migration applied, once per session."""

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


@dataclass(frozen=True)
class RedisTarget:
    """One Redis topology under test: the settings that select it, and a client."""

    name: str  # standalone, cluster or sentinel
    env: dict[str, str]  # the REDIS_* settings of ``make_config``

    def client(self) -> RedisClient:
        """A client of this topology with the tests' generous timeouts."""
        redis = make_config(**self.env).redis
        return create_redis(
            dataclasses.replace(
                redis,
                socket_timeout_s=TEST_CLIENT_TIMEOUT_S,
                connect_timeout_s=TEST_CLIENT_TIMEOUT_S,
                pool_timeout_s=TEST_CLIENT_TIMEOUT_S,
            )
        )

    async def empty(self) -> None:
        """Every key gone, by SCAN + UNLINK on every primary (never FLUSHDB)."""
        client = self.client()
        try:
            await topology.unlink_matching(client, "*", 1_000, 1_000)
        finally:
            await topology.close(client)


async def empty_redis(redis_url: str) -> None:
    await RedisTarget("standalone", {"REDIS_URL": redis_url}).empty()


def forbidden_calls(urls: list[str]) -> dict[str, dict[str, int]]:
    """KEYS, FLUSHDB and FLUSHALL calls per node since it started, from INFO commandstats."""
    found: dict[str, dict[str, int]] = {}
    for url in urls:
        with SyncRedis.from_url(url, socket_timeout=TEST_CLIENT_TIMEOUT_S) as client:
            stats = client.info("commandstats")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if name.removeprefix("cmdstat_") in FORBIDDEN_COMMANDS
        }
        if calls:
            found[url] = calls
    return found


def crossslot_errors(urls: list[str]) -> dict[str, int]:
    """CROSSSLOT errors per node since it started, from INFO errorstats."""
    found: dict[str, int] = {}
    for url in urls:
        with SyncRedis.from_url(url, socket_timeout=TEST_CLIENT_TIMEOUT_S) as client:
            stats = client.info("errorstats")
        if "errorstat_CROSSSLOT" in stats:
            found[url] = int(stats["errorstat_CROSSSLOT"]["count"])
    return found


@pytest.fixture(scope="session")
def redis_cluster(session_dir: Path) -> Iterator[RedisClusterServers]:
    """A 3-primary + 3-replica Redis Cluster for the session."""
    servers = RedisClusterServers(session_dir / "cluster")
    try:
        servers.start()
        yield servers
        running = [node.url for node in servers.nodes if node.running()]
        assert forbidden_calls(running) == {}, "KEYS or FLUSH* reached the cluster"
        assert crossslot_errors(running) == {}, "a command or script crossed slots"
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def redis_sentinel(session_dir: Path) -> Iterator[SentinelServers]:
    """A master, a replica and three sentinels for the session."""
    servers = SentinelServers(session_dir / "sentinel")
    try:
        servers.start()
        yield servers
        running = [node.url for node in servers.data_nodes if node.running()]
        assert forbidden_calls(running) == {}, "KEYS or FLUSH* reached the sentinel's servers"
    finally:
        servers.stop()


def cluster_target(servers: RedisClusterServers) -> RedisTarget:
    return RedisTarget(
        "cluster", {"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": servers.addresses}
    )


def sentinel_target(servers: SentinelServers) -> RedisTarget:
    return RedisTarget(
        "sentinel",
        {
            "REDIS_MODE": "sentinel",
            "REDIS_SENTINELS": servers.addresses,
            "REDIS_SENTINEL_MASTER": servers.master_name,
        },
    )


TOPOLOGIES: Final = [
    pytest.param("standalone"),
    pytest.param("cluster", marks=pytest.mark.cluster),
    pytest.param("sentinel", marks=pytest.mark.sentinel),
]


async def target_named(request: pytest.FixtureRequest, name: str) -> RedisTarget:
    """The session's servers of topology ``name``, emptied."""
    if name == "cluster":
        target = cluster_target(request.getfixturevalue("redis_cluster"))
    elif name == "sentinel":
        target = sentinel_target(request.getfixturevalue("redis_sentinel"))
    else:
        target = RedisTarget("standalone", {"REDIS_URL": request.getfixturevalue("redis_url")})
    await target.empty()
    return target


@pytest.fixture(params=TOPOLOGIES)
async def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """Each Redis topology in turn, emptied."""
    return await target_named(request, request.param)


def note(request: pytest.FixtureRequest, text: str) -> None:
    """A line for the session's "environment notes": what this machine could not run."""
    request.config.stash.setdefault(ENVIRONMENT_NOTES, []).append(text)


@pytest.fixture(scope="session")
def pgbouncer(
    request: pytest.FixtureRequest, session_dir: Path, database_url: str
) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of the test database. Debian's
    pgbouncer is installed by `make test` (as root); without it the PgBouncer
    tests say so in the environment notes and skip."""
    if not pgbouncer_available():
        note(request, "PgBouncer tests NOT RUN: Debian's pgbouncer is not installed.")
        pytest.skip("needs Debian's pgbouncer: apt-get install -y pgbouncer")
    if urlsplit(database_url).hostname:
        pytest.skip("PgBouncer is put in front of the embedded PostgreSQL only")
    server = PgBouncer(session_dir / "pgbouncer", database_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def app_database_url(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    """The DSN the apps under test pool their connections on: the test
    database, or with ``TEST_PGBOUNCER=transaction`` the same through a
    PgBouncer in transaction mode (their reader sessions then stay direct,
    and ``make_config`` gives them DATABASE_READER_URL and no statement cache).
    """
    if os.environ.get("TEST_PGBOUNCER") != "transaction":
        yield database_url
        return
    bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
    url = bouncer.url_for(database_url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEST_PGBOUNCER_URL", url)
        patch.setenv("TEST_DATABASE_READER_URL", database_url)
        yield url
    transactions = bouncer.transactions()
    print(f"\nPgBouncer (transaction mode) served {transactions} transactions")
    assert transactions > 0, "nothing went through PgBouncer"


@pytest.fixture
async def clean_database(database_url: str, app_database_url: str, schema_tables: list[str]) -> str:
    """The test database with every table emptied; returns the apps' DSN for it."""
    await empty_database(database_url, schema_tables)
    return app_database_url


@pytest.fixture
async def unmigrated_database(database_url: str) -> str:
    """A database of its own on the test server, with no table at all; its URL."""
    name = "hita_unmigrated"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


@pytest.fixture
async def clean_redis(redis_url: str) -> str:
    """The test Redis database, emptied; returns its URL."""
    await empty_redis(redis_url)
    return redis_url


def make_config(**overrides: str) -> Config:
    """The test profile; without JWT_SECRET, signed with the test folder's own secret."""
    environ = {"HITA_ENV": "test", "HITA_DATA_DIR": str(TEST_ROOT)}
    # TEST_CACHE_L1_ENABLED=false runs the suite with the near cache off.
    environ["CACHE_L1_ENABLED"] = os.environ.get("TEST_CACHE_L1_ENABLED", "true")
    bounced = os.environ.get("TEST_PGBOUNCER_URL")
    if bounced is not None and overrides.get("DATABASE_URL") == bounced:  # app_database_url
        environ["DATABASE_READER_URL"] = os.environ["TEST_DATABASE_READER_URL"]
        environ["DB_STATEMENT_CACHE_SIZE"] = "0"
    environ.update(overrides)
    return with_jwt_secret(load_config(environ))


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
