"""Redis configuration errors said plainly, against a real redis-server (6.2, with ACL).

An ACL user (``redis://user:pw@...``) works; a wrong or a missing password is
one clear line at start (Redis's own WRONGPASS / NOAUTH text) and the reason
in the detailed cache health, while users are still served from PostgreSQL;
``REDIS_PASSWORD`` with a ``REDIS_URL`` is applied, or refused at start.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from hita.app import create_app
from hita.appkeys import CACHE
from hita.cli import main
from hita.domain.roles import Role
from hita.embedded import EmbeddedRedis
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.integration.conftest import World, body_of

APP_USER = "hita-app"
APP_PASSWORD = "s3cret-acl-pass"


@pytest.fixture
async def acl_redis(own_redis: EmbeddedRedis) -> EmbeddedRedis:
    """The test's own Redis with an ACL user, and the default user switched off."""
    admin = Redis.from_url(own_redis.url)
    try:
        await admin.acl_setuser(
            APP_USER, enabled=True, passwords=[f"+{APP_PASSWORD}"], keys="*", commands=["+@all"]
        )
        await admin.acl_setuser("default", enabled=False)
    finally:
        await admin.aclose()
    return own_redis


def unix_url(server: EmbeddedRedis, userinfo: str = "") -> str:
    """The server's unix:// URL with ``user:password@`` in front of the path."""
    return f"unix://{userinfo}{server.socket_path}?db=0"


async def make_world(aiohttp_client: AiohttpClient, database_url: str, **settings: str) -> World:
    config = make_config(DATABASE_URL=database_url, **settings)
    app = create_app(config)
    return World(await aiohttp_client(app), app, config, Tokens(config.auth))


async def test_an_acl_user_in_the_url_is_used(
    aiohttp_client: AiohttpClient, clean_database: str, acl_redis: EmbeddedRedis
) -> None:
    world = await make_world(
        aiohttp_client,
        clean_database,
        REDIS_URL=unix_url(acl_redis, f"{APP_USER}:{APP_PASSWORD}@"),
    )
    admin = await world.make_user(Role.ADMIN)
    response = await world.client.get("/v1.0/cache/health/detailed", headers=admin.headers)
    assert response.status == 200
    body = await body_of(response)
    assert body["detailed_statistics"]["service_statistics"]["last_error"] is None
    assert (await body_of(await world.client.get("/v1.0/health")))["cache"] == {"status": "ok"}


async def test_redis_password_is_added_to_a_url_without_one(
    aiohttp_client: AiohttpClient, clean_database: str, acl_redis: EmbeddedRedis
) -> None:
    world = await make_world(
        aiohttp_client,
        clean_database,
        REDIS_URL=unix_url(acl_redis, f"{APP_USER}@"),
        REDIS_PASSWORD=APP_PASSWORD,
    )
    assert urlsplit(world.config.redis.url or "").password == APP_PASSWORD
    assert await world.app[CACHE].ping()


@pytest.mark.parametrize(
    "case",
    [
        (f"{APP_USER}:wrong-password@", "WRONGPASS invalid username-password pair"),
        ("", "NOAUTH "),
    ],
    ids=["wrong password", "missing password"],
)
async def test_a_password_problem_is_one_clear_line_and_in_the_detailed_health(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    acl_redis: EmbeddedRedis,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, str],
) -> None:
    userinfo, reason = case
    with caplog.at_level(logging.WARNING, logger="hita.cache.client"):
        world = await make_world(
            aiohttp_client, clean_database, REDIS_URL=unix_url(acl_redis, userinfo)
        )
        admin = await world.make_user(Role.ADMIN)
        guest = await world.make_user()
        # Users are still served, from PostgreSQL.
        for _ in range(10):
            response = await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)
            assert response.status == 200
        detailed = await world.client.get("/v1.0/cache/health/detailed", headers=admin.headers)
    start_lines = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(start_lines) == 1
    assert start_lines[0].startswith(f"Redis at unix://{APP_USER if userinfo else ''}")
    assert reason in start_lines[0]
    assert "wrong-password" not in caplog.text  # never the password itself
    # Each kind of failure is logged once per interval, not once per request.
    assert sum(reason in r.getMessage() for r in caplog.records) <= 2

    assert detailed.status == 503
    body = await body_of(detailed)
    assert body["error"] == "Redis cache not available"
    assert body["reason"].startswith(reason)
    health = await body_of(await world.client.get("/v1.0/health"))
    assert health["status"] == "degraded"


def test_redis_password_that_disagrees_with_the_url_is_refused_at_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["config"],
        {
            "HITA_ENV": "test",
            "REDIS_URL": "redis://app:one@127.0.0.1:6379/0",
            "REDIS_PASSWORD": "two",
        },
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "hita: configuration error: REDIS_PASSWORD and the password in REDIS_URL differ:"
        " set only one of them"
    ]
