"""The bounded connection pool over a real Redis: at most ``max_connections``,
a bounded wait in arrival order, and no turn lost to a waiter that leaves.

Connections are held by the test itself (``get_connection`` without a
command), so every wait below exists by construction, not by timing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from hita.cache.connection import BoundedConnectionPool, PoolExhausted
from hita.cache.core import is_pool_exhausted

WAIT_S = 10.0  # long enough never to expire on a busy machine, unless a test wants it


@pytest.fixture
async def pool(clean_redis: str) -> AsyncIterator[BoundedConnectionPool]:
    made = BoundedConnectionPool.from_url(clean_redis, max_connections=2, timeout=WAIT_S)
    yield made
    await made.aclose()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_commands_beyond_the_bound_wait_and_all_succeed(
    pool: BoundedConnectionPool,
) -> None:
    redis = Redis(connection_pool=pool)
    await redis.set("k", b"v")
    assert await asyncio.gather(*(redis.get("k") for _ in range(50))) == [b"v"] * 50
    assert len(pool._available_connections) + len(pool._in_use_connections) <= 2


async def test_a_waiter_gets_the_next_released_connection_in_arrival_order(
    pool: BoundedConnectionPool,
) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    first = asyncio.create_task(pool.get_connection())
    await settle()
    second = asyncio.create_task(pool.get_connection())
    await settle()
    assert not first.done()
    assert not second.done()
    await pool.release(held[0])
    assert await first is held[0]
    await settle()
    assert not second.done()
    await pool.release(held[1])
    assert await second is held[1]
    for connection in (held[0], held[1]):
        await pool.release(connection)


async def test_a_newcomer_queues_behind_a_waiter_instead_of_overtaking(
    pool: BoundedConnectionPool,
) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    waiter = asyncio.create_task(pool.get_connection())
    await settle()
    await pool.release(held[0])  # the waiter's turn; it has not run yet
    newcomer = asyncio.create_task(pool.get_connection())
    assert await waiter is held[0]
    await settle()
    assert not newcomer.done()
    await pool.release(held[1])
    assert await newcomer is held[1]
    for connection in held:
        await pool.release(connection)


async def test_a_wait_past_the_timeout_fails_as_pool_exhausted(clean_redis: str) -> None:
    pool = BoundedConnectionPool.from_url(clean_redis, max_connections=1, timeout=0.05)
    try:
        held = await pool.get_connection()
        with pytest.raises(RedisConnectionError) as raised:
            await pool.get_connection()
        assert isinstance(raised.value, PoolExhausted)  # a ConnectionError to every caller
        assert is_pool_exhausted(raised.value)  # the breaker's cue: our overload, not Redis's
        assert not pool._waiting
        await pool.release(held)
        again = await pool.get_connection()  # the expired waiter took nothing with it
        await pool.release(again)
    finally:
        await pool.aclose()


async def test_a_waiter_cancelled_after_its_turn_came_passes_it_on(
    pool: BoundedConnectionPool,
) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    cancelled = asyncio.create_task(pool.get_connection())
    await settle()
    behind = asyncio.create_task(pool.get_connection())
    await settle()
    await pool.release(held[0])  # ``cancelled``'s turn...
    cancelled.cancel()  # ...but it is cancelled before it can take it
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await asyncio.wait_for(behind, WAIT_S) is held[0]
    await pool.release(held[0])
    await pool.release(held[1])
    assert pool._waiting == 0


async def test_a_waiter_cancelled_in_line_leaves_no_trace(pool: BoundedConnectionPool) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    gone = asyncio.create_task(pool.get_connection())
    await settle()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert pool._waiting == 0
    await pool.release(held[0])
    again = await pool.get_connection()  # taken at once: no ghost waiter ahead
    assert again is held[0]
    for connection in (again, held[1]):
        await pool.release(connection)
