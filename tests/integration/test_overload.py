"""Overload is said as overload: 503 at once with ``Retry-After``, never
"Database not available" while PostgreSQL is up.

Requests are held in flight by a lock on the ``users`` table taken from
another connection (each request's token check then waits in PostgreSQL), so
the tests need no timing: the bound is full, or the pool is, by construction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.appkeys import DATABASE
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.integration.conftest import Account, World, body_of, until
from tests.integration.test_metrics import scrape, value

SETTLE_S = 10.0


async def make_world(aiohttp_client: AiohttpClient, clean_database: str, **settings: str) -> World:
    config = make_config(DATABASE_URL=clean_database, **settings)
    app = create_app(config)
    return World(await aiohttp_client(app), app, config, Tokens(config.auth))


@asynccontextmanager
async def users_locked(database_url: str) -> AsyncIterator[None]:
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


def read_self(world: World, who: Account) -> asyncio.Task[ClientResponse]:
    return asyncio.create_task(world.client.get(f"/v1.0/user/{who.id}", headers=who.headers))


async def assert_overloaded(response: ClientResponse) -> None:
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    body = await body_of(response)
    assert body == {"success": False, "error": "Service overloaded; retry shortly"}


async def test_past_the_in_flight_bound_the_answer_is_503_overloaded_at_once(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await make_world(
        aiohttp_client, clean_database, REDIS_URL=clean_redis, HTTP_MAX_IN_FLIGHT="2"
    )
    guests = [await world.make_user() for _ in range(3)]
    async with users_locked(clean_database):
        held = [read_self(world, guest) for guest in guests[:2]]
        pool = world.app[DATABASE].gate
        assert pool is not None
        await until(lambda: pool.in_use == 2, "the two requests never reached PostgreSQL")
        started = time.monotonic()
        response = await world.client.get(f"/v1.0/user/{guests[2].id}", headers=guests[2].headers)
        refused_in = time.monotonic() - started
        await assert_overloaded(response)
        # Metrics are always served, and say why.
        samples = await scrape(world)
    assert refused_in < SETTLE_S / 2  # at once: it never waited for the lock
    for task in held:
        assert (await task).status == 200
    assert value(samples, "hita_overload_refusals_total", reason="in_flight") == 1
    assert value(samples, "hita_http_in_flight") == 2
    assert value(samples, "hita_http_requests_total", status="503") == 1


async def test_a_pool_wait_past_its_budget_is_overload_not_database_unavailable(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await make_world(
        aiohttp_client,
        clean_database,
        REDIS_URL=clean_redis,
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE="2",
        DB_QUEUE_MAX="1",
        DB_QUEUE_TIMEOUT_MS="200",
    )
    guests = [await world.make_user() for _ in range(4)]
    gate = world.app[DATABASE].gate
    assert gate is not None
    async with users_locked(clean_database):
        held = [read_self(world, guest) for guest in guests[:2]]
        await until(lambda: gate.in_use == 2, "the pool never filled")
        waiting = read_self(world, guests[2])
        await until(lambda: gate.waiting == 1, "the third request never queued")
        # The queue is full: refused at once.
        await assert_overloaded(
            await world.client.get(f"/v1.0/user/{guests[3].id}", headers=guests[3].headers)
        )
        # The one in the queue gives up after its budget, as overload too.
        await assert_overloaded(await waiting)
        samples = await scrape(world)
    for task in held:
        assert (await task).status == 200
    assert value(samples, "hita_overload_refusals_total", reason="database_queue_full") == 1
    assert value(samples, "hita_overload_refusals_total", reason="database_wait_budget") == 1
    assert value(samples, "hita_db_queue_waits_total") >= 1
    # Once the lock is gone, everyone is served again.
    response = await world.client.get(f"/v1.0/user/{guests[3].id}", headers=guests[3].headers)
    assert response.status == 200


async def http_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, token: str
) -> tuple[int, float]:
    """One GET on an open connection: (status, seconds until the answer's head)."""
    started = time.monotonic()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    elapsed = time.monotonic() - started
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1]), elapsed


async def test_after_a_503_overloaded_the_connection_is_paced_not_others(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    pace_s = 1.5
    world = await make_world(
        aiohttp_client,
        clean_database,
        REDIS_URL=clean_redis,
        HTTP_MAX_IN_FLIGHT="1",
        OVERLOAD_PACE_MS=str(int(pace_s * 1000)),
    )
    guests = [await world.make_user() for _ in range(2)]
    gate = world.app[DATABASE].gate
    assert gate is not None
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        async with users_locked(clean_database):
            held = read_self(world, guests[0])
            await until(lambda: gate.in_use == 1, "the first request never reached PostgreSQL")
            status, first = await http_get(
                reader, writer, f"/v1.0/user/{guests[1].id}", guests[1].token
            )
            assert status == 503
        assert (await held).status == 200
        # The answer came at once; the next request on that connection waits its turn.
        status, second = await http_get(
            reader, writer, f"/v1.0/user/{guests[1].id}", guests[1].token
        )
        assert status == 200
        assert second >= pace_s * 0.9
        assert first < second
    finally:
        writer.close()
        await writer.wait_closed()
    # Another connection is served without waiting for that one's pace.
    response = await world.client.get(f"/v1.0/user/{guests[0].id}", headers=guests[0].headers)
    assert response.status == 200
