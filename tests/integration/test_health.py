from __future__ import annotations

import socket

from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.config import Config
from tests.conftest import make_config


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_reports_both_dependencies_ok(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    client = await aiohttp_client(create_app(config))
    response = await client.get("/v1.0/health")
    assert response.status == 200
    assert await response.json() == {
        "success": True,
        "status": "ok",
        "database": {"status": "ok"},
        "cache": {"status": "ok"},
        "notifications": {"status": "ok"},  # the reader session's LISTEN delivers
    }
    assert response.headers["X-Request-ID"]


async def test_service_starts_with_redis_down_and_says_so(
    aiohttp_client: AiohttpClient, clean_database: str
) -> None:
    config = make_config(
        DATABASE_URL=clean_database, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0"
    )
    client = await aiohttp_client(create_app(config))
    response = await client.get("/v1.0/health")
    assert response.status == 200
    body = await response.json()
    assert body["database"] == {"status": "ok"}
    assert body["cache"] == {"status": "unavailable"}
    assert body["status"] == "degraded"


async def test_a_well_formed_client_request_id_is_kept(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    client = await aiohttp_client(create_app(config))
    response = await client.get("/v1.0/health", headers={"X-Request-ID": "abc-12345678"})
    assert response.headers["X-Request-ID"] == "abc-12345678"
    response = await client.get("/v1.0/health", headers={"X-Request-ID": "bad id\u00e9"})
    assert response.headers["X-Request-ID"] != "bad id\u00e9"


async def test_liveness_answers_without_a_token(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    client = await aiohttp_client(create_app(config))
    response = await client.get("/v1.0/health/live")
    assert response.status == 200
    assert await response.json() == {"success": True, "status": "ok"}
