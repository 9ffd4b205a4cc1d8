"""PostgreSQL goes away mid-run: quick JSON 503s, then recovery on its own.

Owns a private PostgreSQL, so stopping it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.appkeys import OPENAPI, USER_SERVICE
from hita.domain.roles import Role
from hita.domain.users import NewUser, Operator
from hita.embedded import EmbeddedPostgres
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.integration.conftest import PASSWORD, taken_in
from tests.integration.test_openapi_api import assert_documented

pytestmark = pytest.mark.slow

OUTAGE_ANSWER_BUDGET_S = 5.0
RECOVERY_BUDGET_S = 15.0


async def test_requests_get_503_while_postgres_is_down_and_recover(
    aiohttp_client: AiohttpClient, private_postgres: EmbeddedPostgres, clean_redis: str
) -> None:
    config = make_config(
        DATABASE_URL=private_postgres.url,
        REDIS_URL=clean_redis,
        CACHE_SERVE_WHEN_DB_DOWN="true",
        DB_ACQUIRE_TIMEOUT_S="1",
        DB_CONNECT_TIMEOUT_S="1",
        DB_COMMAND_TIMEOUT_S="2",
    )
    app = create_app(config)
    client = await aiohttp_client(app)
    user = await app[USER_SERVICE].create_user(
        Operator(), NewUser("night.guest", "night@hotel.example", "Night Guest", PASSWORD)
    )
    headers = {"Authorization": f"Bearer {Tokens(config.auth).issue(user['id'], Role.USER)}"}
    details = f"/v1.0/user/{user['id']}"
    path = f"/v1.0/points/{user['id']}/history"  # not cached: always PostgreSQL
    await taken_in(app)  # then nothing removes what the next read caches
    assert (await client.get(details, headers=headers)).status == 200
    assert (await client.get(path, headers=headers)).status == 200

    private_postgres.stop()
    # What the cache holds is still served (and still true: nothing can change it now).
    assert (await client.get(details, headers=headers)).status == 200
    for method, url, body in [
        ("GET", path, None),
        ("POST", "/v1.0/auth/login", {"username": "night.guest", "password": PASSWORD}),
    ]:
        started = time.monotonic()
        response = await client.request(method, url, json=body, headers=headers)
        assert time.monotonic() - started < OUTAGE_ANSWER_BUDGET_S
        assert response.status == 503
        assert await response.json() == {"success": False, "error": "Database not available"}
    response = await client.get("/v1.0/health")
    assert response.status == 503  # a load balancer stops sending traffic here
    assert await response.json() == {
        "success": False,
        "error": "Database not available",
        "status": "unavailable",
        "database": {"status": "unavailable"},
        "cache": {"status": "ok"},
        "notifications": {"status": "ok"},
    }
    await assert_documented(orjson.loads(app[OPENAPI]), "GET", "/v1.0/health", response)
    live = await client.get("/v1.0/health/live")  # touches no dependency
    assert live.status == 200
    assert await live.json() == {"success": True, "status": "ok"}

    private_postgres.start()
    deadline = time.monotonic() + RECOVERY_BUDGET_S
    status = 503
    while status != 200 and time.monotonic() < deadline:
        response = await client.get(path, headers=headers)
        status = response.status
        if status != 200:
            await asyncio.sleep(0.2)  # polling for the server, not waiting for a side effect
    assert status == 200
    assert (await client.get("/v1.0/health")).status == 200
