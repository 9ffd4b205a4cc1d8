"""One master's tracking connections: made by redis-py (whose socket is then
read directly), kept alive by PING, and lost when the server stops answering."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest
from redis import Redis as SyncRedis

from hita.cache import tracking_node
from hita.cache.connection import tracking_connection
from hita.cache.tracking import OneServer, Tracking
from hita.cache.tracking_node import NodeTracking, raw_socket
from hita.embedded import EmbeddedRedis
from tests.conftest import make_config
from tests.integration.conftest import until

FROZEN_S = 1_000.0  # a node clock that stands still: freshness is tested on its own below

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


# -- drain: what the socket holds, asked without a failing recv ------------------------


async def drained_after_a_write(
    clean_redis: str, *, kill: bool = False
) -> tuple[bool, list[list[str] | None], list[str]]:
    """A node tracking ``user_details:``, whose socket only ``drain`` reads (the
    loop's reader is removed); a key is written, or the subscriber killed, then
    one drain: what it answered, the keys it applied, why tracking was lost."""
    config = make_config(REDIS_URL=clean_redis).redis
    keys: list[list[str] | None] = []
    lost: list[str] = []
    node = NodeTracking(
        "server",
        lambda: tracking_connection(config, None, 1.0),
        ["user_details:"],
        keys.append,
        lambda _node, why: lost.append(why),
        clock=lambda: FROZEN_S,  # the PONG of its first PING keeps it fresh
    )
    await node.connect()
    sub = node._sub
    assert sub is not None
    asyncio.get_running_loop().remove_reader(sub.fileno())
    writer = tracking_connection(config, None, 1.0)
    writer.connect()  # type: ignore[no-untyped-call]
    try:
        if kill:
            writer.send_command("CLIENT", "KILL", "ID", str(node.client_id))  # type: ignore[no-untyped-call]
        else:
            writer.send_command("SET", "user_details:5779356081", "{}")  # type: ignore[no-untyped-call]
        writer.read_response()
        await asyncio.sleep(0.05)  # the message reaches the socket; nothing reads it
        return node.drain(), keys, lost
    finally:
        writer.disconnect()  # type: ignore[no-untyped-call]
        node.close()


async def test_a_drain_applies_the_message_waiting_on_the_socket(clean_redis: str) -> None:
    answered, keys, lost = await drained_after_a_write(clean_redis)
    assert answered is True
    assert keys == [["user_details:5779356081"]]
    assert lost == []


async def test_a_drain_sees_the_subscriber_closed_by_redis(clean_redis: str) -> None:
    answered, _, lost = await drained_after_a_write(clean_redis, kill=True)
    assert answered is False
    assert lost == ["connection closed by Redis"]


async def test_control_a_readiness_check_that_sees_nothing_misses_the_message(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking_node, "_poller", lambda sock: lambda timeout: [])
    # The PONG goes unread too, so freshness would pause L1: lift it, to see the drain alone.
    monkeypatch.setattr(tracking_node, "FRESH_S", float("inf"))
    answered, keys, _ = await drained_after_a_write(clean_redis)
    assert answered is True
    assert keys == []  # L1 would serve the entry the write changed


# -- freshness: the last PONG answers a recent PING ------------------------------------------


async def test_l1_pauses_once_its_last_pong_answers_no_recent_ping(clean_redis: str) -> None:
    """A drain serves while the last PONG taken in answers a PING sent within
    ``FRESH_S``; after a gap it says no (and sends a PING) until that PING's
    PONG is in. On a node clock the test moves; Redis answers for real."""
    config = make_config(REDIS_URL=clean_redis).redis
    now = [FROZEN_S]
    node = NodeTracking(
        "server",
        lambda: tracking_connection(config, None, 1.0),
        ["user_details:"],
        lambda _keys: None,
        lambda _node, why: None,
        clock=lambda: now[0],
    )
    await node.connect()  # its first PING goes out now
    assert node._sub is not None
    asyncio.get_running_loop().remove_reader(node._sub.fileno())
    try:
        await asyncio.sleep(0.05)  # the PONG reaches the socket
        assert node.drain() is True
        now[0] += tracking_node.FRESH_S  # the edge: still fresh, and a PING is due
        assert node.drain() is True
        assert node._ping_sent == now[0]
        now[0] += tracking_node.FRESH_S / 2  # that PING's PONG not taken in yet
        await asyncio.sleep(0.05)
        assert node.drain() is True  # taken in now: it answers a PING sent FRESH_S / 2 ago
        now[0] += tracking_node.FRESH_S + 0.001  # no PING answered since
        late = node.late_reads
        assert node.drain() is False
        assert node.late_reads == late + 1
        for _ in range(2):  # the PING still out, if any (too old), then one sent now
            await asyncio.sleep(0.05)
            served = node.drain()
        assert served is True
        assert node._answered == now[0]
    finally:
        node.close()


# -- one drain a turn of the loop ----------------------------------------------------------


@contextlib.asynccontextmanager
async def tracked(clean_redis: str) -> AsyncIterator[tuple[Tracking, list[list[str] | None]]]:
    """Tracking of ``user_details:`` on one server, whose subscriber socket only
    ``drain`` reads (the loop's reader is removed), and the keys it applied."""
    keys: list[list[str] | None] = []
    tracking = Tracking(
        OneServer(make_config(REDIS_URL=clean_redis).redis),
        ["user_details:"],
        lambda changed, reason="": keys.append(changed),
    )
    running = asyncio.create_task(tracking.run_forever())
    fresh_s = tracking_node.FRESH_S
    setattr(tracking_node, "FRESH_S", float("inf"))  # noqa: B010 - the turns alone
    try:
        await until(lambda: tracking.active, "tracking on")
        for node in tracking._nodes.values():
            assert node._sub is not None
            asyncio.get_running_loop().remove_reader(node._sub.fileno())
        keys.clear()
        yield tracking, keys
    finally:
        setattr(tracking_node, "FRESH_S", fresh_s)  # noqa: B010
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def _write_and_wait(clean_redis: str) -> None:
    """A write by another client, and its invalidation on our socket (a blocking
    wait: the loop does not turn)."""
    writer = SyncRedis.from_url(clean_redis)
    writer.set("user_details:5779356081", "{}")
    writer.close()
    time.sleep(0.05)


async def woken_after_a_drain(clean_redis: str) -> tuple[list[list[str] | None], bool]:
    """Task ``reader`` is woken by a callback that runs after another task's
    drain, in the same turn of the loop, and after a write: what ``reader``'s
    drain applied, and whether the woken reader was told to serve."""
    async with tracked(clean_redis) as (tracking, keys):
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        async def reader() -> bool:
            await woken
            return tracking.drain()

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)  # the reader waits for its wake-up

        def drain_then_write() -> None:  # another request's read, this turn
            assert tracking.drain()
            _write_and_wait(clean_redis)

        loop.call_soon(drain_then_write)
        loop.call_soon(woken.set_result, None)  # what an I/O callback after the drain does
        return keys, await task


async def test_a_task_woken_after_a_drain_drains_again(clean_redis: str) -> None:
    keys, served = await woken_after_a_drain(clean_redis)
    assert served is True
    assert keys == [["user_details:5779356081"]]


async def test_control_a_drain_kept_past_its_turn_misses_the_write(
    clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Tracking, "_next_turn", lambda self: None)
    keys, served = await woken_after_a_drain(clean_redis)
    assert served is True
    assert keys == []  # L1 would serve the entry the write changed


async def test_reads_of_one_turn_share_its_drain(clean_redis: str) -> None:
    """Within a turn, a second drain reads no socket (the saving); the next
    turn's first drain does."""
    async with tracked(clean_redis) as (tracking, keys):
        assert tracking.drain()
        _write_and_wait(clean_redis)
        assert tracking.drain()
        assert keys == []  # this turn's reads all began before the write arrived
        await asyncio.sleep(0)
        assert tracking.drain()
        assert keys == [["user_details:5779356081"]]


async def test_a_change_of_the_nodes_within_a_turn_makes_the_next_drain_read(
    clean_redis: str,
) -> None:
    """A drain's turn is over as soon as the nodes tracked change (a node lost,
    a topology change, a reconcile): the next read drains every node again."""
    async with tracked(clean_redis) as (tracking, keys):
        assert tracking.drain()
        _write_and_wait(clean_redis)
        tracking._update()  # what a reconcile, a lost node or a topology change runs
        assert tracking.drain()
        assert keys == [["user_details:5779356081"]]
