"""An app over the real PostgreSQL and Redis of the session, and accounts in it."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.appkeys import CACHE, COHERENCE, USER_SERVICE
from hita.config import Config
from hita.constants import JWT_ALGORITHM
from hita.db.outbox import Renewal
from hita.domain.roles import Role
from hita.domain.users import NewUser, Operator
from hita.embedded import EmbeddedPostgres, EmbeddedRedis
from hita.services.tokens import Tokens
from tests.conftest import (
    TEST_ROOT,
    RedisTarget,
    crossslot_errors,
    forbidden_calls,
    make_config,
)
from tests.topologies import RedisClusterServers, SentinelServers

PASSWORD = "correct horse battery"
SETTLE_S = 3.0  # how long a test waits for changes taken in to reach Redis

_serial = itertools.count(1)


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    email: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    """The test client, plus a factory of users with valid tokens."""

    client: TestClient[web.Request, web.Application]
    app: web.Application
    config: Config
    tokens: Tokens

    def sign(self, claims: dict[str, Any]) -> str:
        """A token with exactly these claims, signed as the service signs."""
        return jwt.encode(claims, self.config.auth.jwt_secret, algorithm=JWT_ALGORITHM)

    async def make_user(
        self, role: Role = Role.USER, *, is_active: bool = True, **fields: Any
    ) -> Account:
        return await open_account(self.app, self.tokens, role, is_active=is_active, **fields)


async def taken_in(app: web.Application) -> None:
    """Wait until this instance has taken in and applied every change committed
    so far. A change made as the operator would (no HTTP invalidation) reaches
    the cache through the outbox: an entry filled before that would be
    invalidated a moment later."""
    await app[COHERENCE].confirm_delivery()
    cache = app[CACHE]
    deadline = time.monotonic() + SETTLE_S
    # Bounded without failing: with a Redis the app cannot use (a test of
    # that), nothing is applied, and reads stay on PostgreSQL as they should.
    while cache.pending and time.monotonic() < deadline:  # noqa: ASYNC110 - the applier's work
        await asyncio.sleep(0.01)


async def open_account(
    app: web.Application, tokens: Tokens, role: Role, *, is_active: bool = True, **fields: Any
) -> Account:
    """A new user of ``app`` (made as the operator would), with a valid token."""
    n = next(_serial)
    new = NewUser(
        username=fields.get("username", f"guest{n}"),
        email=fields.get("email", f"guest{n}@hotel.example"),
        full_name=fields.get("full_name", f"Guest Number {n}"),
        password=fields.get("password", PASSWORD),
        role=role,
        is_active=is_active,
    )
    user = await app[USER_SERVICE].create_user(Operator(), new)
    await taken_in(app)
    token = tokens.issue(user["id"], role)
    return Account(user["id"], user["username"], user["email"], role, token)


@pytest.fixture
async def world(aiohttp_client: AiohttpClient, config: Config) -> World:
    app = create_app(config)
    return World(await aiohttp_client(app), app, config, Tokens(config.auth))


@pytest.fixture
def topology_config(clean_database: str, redis_target: RedisTarget) -> Config:
    """The test configuration over each Redis topology in turn (standalone,
    cluster, sentinel). A module runs its tests on all three by defining
    ``config`` as this fixture."""
    return make_config(DATABASE_URL=clean_database, DB_AUTO_MIGRATE="false", **redis_target.env)


@pytest.fixture
async def world_on_own_redis(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> World:
    """An app whose Redis is a server the test owns, to pause or kill."""
    config = make_config(DATABASE_URL=clean_database, REDIS_URL=own_redis.url)
    app = create_app(config)
    return World(await aiohttp_client(app), app, config, Tokens(config.auth))


def assert_no_secrets(text: str) -> None:
    """No response may carry a password hash, whatever its shape."""
    assert "argon2" not in text
    assert "password_hash" not in text
    assert PASSWORD not in text


async def body_of(response: ClientResponse) -> Any:
    """The JSON body, after checking the raw text for secrets."""
    assert response.content_type == "application/json"
    assert_no_secrets(await response.text())
    return await response.json()


def deafen(world: World) -> None:
    """Control: this instance no longer takes in changes (its lease still renews)."""
    coherence = world.app[COHERENCE]

    def take_nothing_in(renewal: Renewal) -> None:
        coherence._applied = renewal.snapshot

    coherence._take_in = take_nothing_in  # type: ignore[method-assign]


async def _no_sweep(apply: object, **options: object) -> int:
    return 0


def silence_outbox(world: World) -> None:
    """Control: deaf, and its outbox sweep applies nothing either."""
    deafen(world)
    world.app[COHERENCE].outbox.sweep = _no_sweep  # type: ignore[method-assign]


async def until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Wait for ``check()`` to hold, failing with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def notifications_settled(world: World, *others: World) -> None:
    """Wait until every change committed so far has been taken in by every
    instance and applied to Redis by each of ``world`` and ``others``.
    Otherwise a write's invalidation may come round after the next read."""
    assert await world.app[COHERENCE].confirm_delivery(), "some reader never took it in"
    caches = [each.app[CACHE] for each in (world, *others)]
    await until(lambda: not any(c.pending for c in caches), "changes taken in were never applied")


@pytest.fixture
def private_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL this test owns, to stop and start."""
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="o", dir=TEST_ROOT))
    server = EmbeddedPostgres(root / "postgres", database="hita_outage", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_cluster(session_dir: Path) -> Iterator[RedisClusterServers]:
    """A Redis Cluster of this test's own, to kill nodes of."""
    root = Path(tempfile.mkdtemp(prefix="c", dir=session_dir))
    servers = RedisClusterServers(root)
    try:
        servers.start()
        yield servers
        survivors = [node.url for node in servers.nodes if node.running()]
        assert forbidden_calls(survivors) == {}
        assert crossslot_errors(survivors) == {}
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_sentinel(session_dir: Path) -> Iterator[SentinelServers]:
    """A Sentinel set of this test's own, to kill its master."""
    root = Path(tempfile.mkdtemp(prefix="s", dir=session_dir))
    servers = SentinelServers(root)
    try:
        servers.start()
        yield servers
        survivors = [node.url for node in servers.data_nodes if node.running()]
        assert forbidden_calls(survivors) == {}
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)
