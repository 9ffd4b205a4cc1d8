"""One master's tracking connections: made by redis-py (whose socket is then
read directly), kept alive by PING, and lost when the server stops answering."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from hita.cache import tracking_node
from hita.cache.connection import tracking_connection
from hita.cache.tracking_node import NodeTracking, raw_socket
from hita.embedded import EmbeddedRedis
from tests.conftest import make_config

pytestmark = pytest.mark.slow


def test_the_socket_under_a_redis_py_connection_is_reachable(redis_url: str) -> None:
    """redis-py keeps it behind ``_get_socket``: this fails loudly if that changes."""
    connection = tracking_connection(make_config(REDIS_URL=redis_url).redis, None, 1.0)
    connection.connect()  # type: ignore[no-untyped-call]
    try:
        sock = raw_socket(connection)
        assert isinstance(sock, socket.socket)
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"
    finally:
        connection.disconnect()  # type: ignore[no-untyped-call]


async def lost_after_pause(own_redis: EmbeddedRedis) -> tuple[list[str], float]:
    """Tracking on a server that is then paused: why it was lost, and when."""
    config = make_config(REDIS_URL=own_redis.url).redis
    lost: list[str] = []
    node = NodeTracking(
        "server",
        lambda: tracking_connection(config, None, 1.0),
        ["user_details:"],
        lambda keys: None,
        lambda _node, why: lost.append(why),
    )
    await node.connect()
    running = asyncio.create_task(node.until_lost())
    own_redis.process.pause()
    paused = time.monotonic()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(4.0):
                await running
        return lost, time.monotonic() - paused
    finally:
        own_redis.process.resume()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        node.close()


async def test_a_paused_server_loses_tracking_within_the_pong_bound(
    own_redis: EmbeddedRedis,
) -> None:
    lost, after = await lost_after_pause(own_redis)
    assert lost == [f"no PONG within {tracking_node.PONG_WITHIN_S:.1f} s"]
    assert after < tracking_node.PING_S + tracking_node.PONG_WITHIN_S + 1.0


async def test_control_without_the_keepalive_a_paused_server_keeps_tracking_on(
    own_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(NodeTracking, "_keepalive", lambda self: None)
    lost, _ = await lost_after_pause(own_redis)
    assert lost == []  # L1 would go on serving, hearing nothing
