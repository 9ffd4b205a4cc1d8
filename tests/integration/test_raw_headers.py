"""Headers and URLs that aiohttp's client refuses to send, sent as raw bytes.

Every header the service reads (and some it ignores) with a value that is not
ASCII, not UTF-8, empty or too long gets a JSON answer with a 4xx status (or
the normal answer when the header is only ignored), never a 500.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
import pytest

from hita.constants import MAX_HEADER_FIELD_BYTES, MAX_TOKEN_BYTES
from hita.domain.roles import Role
from tests.integration.conftest import PASSWORD, World

READ_TIMEOUT_S: Final = 30.0

# Values no well-behaved client sends; aiohttp's own client refuses most of them.
BAD_VALUES: Final = {
    "latin-1": b"\xe9\xe9\xe9.\xe9\xe9.\xe9",
    "utf-8": "ééé.éé.é".encode(),
    "not utf-8": b"\xff\xfe\xfd",
    "empty": b"",
    "long": b"x" * (MAX_TOKEN_BYTES + 1024),  # over our own limit, under aiohttp's
}


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return orjson.loads(self.body)


def parse(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, body)


async def send_raw(
    world: World, request_line: bytes, headers: list[bytes], body: bytes = b""
) -> RawResponse:
    """One request written byte for byte; the connection closes after the answer."""
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        lines = [request_line, b"Host: 127.0.0.1", b"Connection: close", *headers]
        if body:
            lines += [b"Content-Length: " + str(len(body)).encode()]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), READ_TIMEOUT_S)
    finally:
        writer.close()
        await writer.wait_closed()
    return parse(raw)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1".encode()


class TestRawHeaders:
    @pytest.mark.parametrize("case", BAD_VALUES)
    async def test_authorization_bearer_is_a_json_401(self, world: World, case: str) -> None:
        response = await send_raw(
            world, get("/v1.0/user/list"), [b"Authorization: Bearer " + BAD_VALUES[case]]
        )
        assert response.status == 401
        assert response.json()["success"] is False
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("case", BAD_VALUES)
    async def test_authorization_without_scheme_is_a_json_401(
        self, world: World, case: str
    ) -> None:
        response = await send_raw(
            world, get("/v1.0/user/list"), [b"Authorization: " + BAD_VALUES[case]]
        )
        assert response.status == 401
        assert response.json()["success"] is False

    @pytest.mark.parametrize("case", BAD_VALUES)
    async def test_authorization_on_a_public_route_is_ignored(
        self, world: World, case: str
    ) -> None:
        response = await send_raw(
            world, get("/v1.0/health"), [b"Authorization: Bearer " + BAD_VALUES[case]]
        )
        assert response.status == 200
        assert response.json()["status"] == "ok"

    @pytest.mark.parametrize("case", BAD_VALUES)
    async def test_content_type_of_a_login(self, world: World, case: str) -> None:
        user = await world.make_user(Role.USER)
        body = orjson.dumps({"username": user.username, "password": PASSWORD})
        response = await send_raw(
            world,
            b"POST /v1.0/auth/login HTTP/1.1",
            [b"Content-Type: application/json; charset=" + BAD_VALUES[case]],
            body,
        )
        # The body is JSON whatever the header says: the login goes through.
        assert response.status == 200, response
        assert response.json()["token_type"] == "Bearer"

    @pytest.mark.parametrize("case", BAD_VALUES)
    async def test_x_request_id_is_replaced_by_ours(self, world: World, case: str) -> None:
        response = await send_raw(
            world, get("/v1.0/health"), [b"X-Request-ID: " + BAD_VALUES[case]]
        )
        assert response.status == 200
        assert response.json()["success"] is True
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])

    @pytest.mark.parametrize("header", [b"If-None-Match", b"Accept", b"Accept-Encoding", b"Cookie"])
    @pytest.mark.parametrize("case", BAD_VALUES)
    async def test_headers_the_service_ignores(
        self, world: World, header: bytes, case: str
    ) -> None:
        admin = await world.make_user(Role.ADMIN)
        response = await send_raw(
            world,
            get(f"/v1.0/user/{admin.id}"),
            [header + b": " + BAD_VALUES[case], f"Authorization: Bearer {admin.token}".encode()],
        )
        assert response.status == 200, response
        assert response.json()["user"]["id"] == admin.id

    @pytest.mark.parametrize(
        "path",
        [b"/v1.0/user/%FF%FE", b"/v1.0/user/%C3%A9", b"/v1.0/%E9t%E9"],
    )
    async def test_paths_that_are_not_utf8_or_ascii(self, world: World, path: bytes) -> None:
        admin = await world.make_user(Role.ADMIN)
        response = await send_raw(
            world, b"GET " + path + b" HTTP/1.1", [f"Authorization: Bearer {admin.token}".encode()]
        )
        assert response.status in (400, 404), response
        assert response.json()["success"] is False

    async def test_a_long_url_within_the_limit_is_a_json_404(self, world: World) -> None:
        path = "/v1.0/" + "a" * (MAX_HEADER_FIELD_BYTES - 1024)
        response = await send_raw(world, get(path), [])
        assert response.status == 404
        assert response.json() == {"success": False, "error": "Resource not found"}

    @pytest.mark.parametrize("where", ["url", "header", "raw bytes in the path"])
    async def test_over_the_line_limit_aiohttp_answers_400_in_plain_text(
        self, world: World, where: str
    ) -> None:
        """aiohttp answers a request it cannot parse before any code of the app
        runs (RequestHandler.handle_error, which no public hook replaces): the
        README documents this one plain-text answer."""
        long = b"a" * (MAX_HEADER_FIELD_BYTES + 1)
        if where == "url":
            response = await send_raw(world, get("/v1.0/") + long, [])
        elif where == "raw bytes in the path":
            response = await send_raw(world, b"GET /v1.0/user/\xe9\xff HTTP/1.1", [])
        else:
            response = await send_raw(
                world, get("/v1.0/health"), [b"Authorization: Bearer " + long]
            )
        assert response.status == 400
        assert response.headers["content-type"].startswith("text/plain")
        assert b"Traceback" not in response.body
