"""Every error is the contract's JSON body, never HTML or a traceback."""

from __future__ import annotations

import io
import logging

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from hita.api.errors import answer_error
from hita.api.responses import json_ok, read_json_object
from hita.api.typedefs import Handler
from hita.app import create_app
from hita.config import Config
from hita.constants import OVERLOAD_RETRY_AFTER_S


async def test_unknown_route_is_a_json_404(aiohttp_client: AiohttpClient, config: Config) -> None:
    client = await aiohttp_client(create_app(config))
    response = await client.get("/v1.0/nothing/here")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert await response.json() == {"success": False, "error": "Resource not found"}


async def test_wrong_method_is_a_json_405_with_allow(
    aiohttp_client: AiohttpClient, config: Config
) -> None:
    client = await aiohttp_client(create_app(config))
    response = await client.delete("/v1.0/health")
    assert response.status == 405
    assert response.headers["Allow"] == "GET,HEAD"
    assert await response.json() == {"success": False, "error": "Method not allowed"}


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The front's error mapping, alone."""
    try:
        return await handler(request)
    except Exception as exc:
        return answer_error(request, exc, OVERLOAD_RETRY_AFTER_S)


def echo_app(max_size: int = 1024 * 1024) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return json_ok({"echo": await read_json_object(request)})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail /internal/path")

    app = web.Application(client_max_size=max_size, middlewares=[errors_as_json])
    app.router.add_post("/echo", echo)
    app.router.add_get("/boom", boom)
    return app


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "Malformed JSON body"),
        (b"[1, 2]", "The JSON body must be an object"),
        (b"\xff\xfe", "Malformed JSON body"),
    ],
)
async def test_broken_json_is_a_json_400(
    aiohttp_client: AiohttpClient, body: bytes, error: str
) -> None:
    client = await aiohttp_client(echo_app())
    response = await client.post("/echo", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert await response.json() == {"success": False, "error": error}


async def test_a_2_mb_body_is_a_json_413(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(echo_app())
    response = await client.post(
        "/echo",
        data=io.BytesIO(b"x" * (2 * 1024 * 1024)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413
    assert await response.json() == {"success": False, "error": "Request body too large"}


async def test_an_unhandled_error_is_a_generic_500_and_logged(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(echo_app())
    with caplog.at_level(logging.ERROR, logger="hita.api.errors"):
        response = await client.get("/boom")
    assert response.status == 500
    text = await response.text()
    assert "secret detail" not in text
    assert "/internal/path" not in text
    assert await response.json() == {"success": False, "error": "Internal server error"}
    assert "Traceback" in caplog.text
    assert "secret detail" in caplog.text
