"""An app over the real PostgreSQL and Redis of the session, and accounts in it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from hita.domain.roles import Role
from hita.domain.users import NewUser, Operator
from hita.embedded import EmbeddedRedis
from hita.services.tokens import Tokens
from tests.conftest import RedisTarget, make_config

PASSWORD = "correct horse battery"

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
    """Control: this instance no longer hears of changes through PostgreSQL."""
    world.app[COHERENCE].listener._on_change = lambda change: None


async def _no_sweep(apply: object) -> int:
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


async def notifications_settled(world: World) -> None:
    """Wait until every change committed so far has come back to this instance
    through PostgreSQL (a barrier notification: they arrive in commit order),
    been applied, and been swept from the outbox (a sweep applies each change
    once more, a moment later). Otherwise a write's invalidation may come round
    again after the next read."""
    await app_settled(world.app)


async def app_settled(app: web.Application) -> None:
    """``notifications_settled`` for an app without a test client (a live server)."""
    coherence = app[COHERENCE]
    assert await coherence.confirm_delivery(), "the notification channel is down"
    cache = app[CACHE]
    await until(lambda: not cache.pending, "the notified invalidations were never applied")
    deadline = time.monotonic() + 10
    while await coherence.outbox.count():  # rows another sweep holds are skipped: retry
        assert time.monotonic() < deadline, "the outbox was never swept"
        if not await coherence.sweep_once():
            await asyncio.sleep(0.01)
