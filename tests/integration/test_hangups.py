"""A client that hangs up while sending its body: not a server error.

The request is counted in ``hita_http_client_disconnects`` (and as status 499,
which no client sees), nothing is logged at ERROR, nothing is counted as a
5xx, and the write whose body never arrived changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from hita.domain.roles import Role
from tests.integration.conftest import World, body_of
from tests.integration.test_metrics import scrape, value

SETTLE_S = 10.0  # bound on waiting for the server to notice the hang-up


async def send_half_and_hang_up(world: World, method: str, path: str, token: str) -> None:
    """Headers announcing a 200-byte JSON body, 20 bytes of it, then close."""
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = (
        f"{method} {path} HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 200\r\n\r\n"
    )
    writer.write(head.encode() + b'{"full_name": "Never')
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    del reader


async def disconnects_seen(
    world: World, expected: float
) -> dict[str, list[tuple[dict[str, str], float]]]:
    deadline = time.monotonic() + SETTLE_S
    samples = await scrape(world)
    while value(samples, "hita_http_client_disconnects_total") < expected:
        assert time.monotonic() < deadline, "the hang-up was never counted"
        await asyncio.sleep(0.02)
        samples = await scrape(world)
    return samples


async def test_a_hang_up_during_the_body_is_no_server_error_and_changes_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user(full_name="Kept Name")
    before = await world.client.get("/v1.0/user/list", headers=admin.headers)
    total_before = (await body_of(before))["pagination"]["total"]

    with caplog.at_level(logging.INFO):
        await send_half_and_hang_up(world, "PATCH", f"/v1.0/user/update/{guest.id}", guest.token)
        await send_half_and_hang_up(world, "POST", "/v1.0/user/create", admin.token)
        samples = await disconnects_seen(world, 2)

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # aiohttp cancels a handler whose client hung up; a body read that fails
    # first is mapped to the same 499 (tests/unit/test_hang_up_mapping.py).
    # Which comes first is the event loop's order: either way, no 5xx.
    assert (
        value(
            samples,
            "hita_http_client_disconnects_total",
            method="PATCH",
            route="/v1.0/user/update/{user_id}",
        )
        == 1
    )
    assert value(samples, "hita_http_client_disconnects_total", route="/v1.0/user/create") == 1
    statuses = {labels["status"] for labels, _ in samples["hita_http_requests_total"]}
    assert not {s for s in statuses if s.startswith("5")}
    assert value(samples, "hita_http_requests_total", status="499") == 2

    # Nothing changed: the name is the old one, and no user was created.
    response = await world.client.get(f"/v1.0/user/{guest.id}", headers=guest.headers)
    assert (await body_of(response))["user"]["full_name"] == "Kept Name"
    after = await world.client.get("/v1.0/user/list", headers=admin.headers)
    assert (await body_of(after))["pagination"]["total"] == total_before
