"""Ordinary events during partial faults, tried as a client would: a failed
login while PostgreSQL is down, a committed write whose invalidation cannot
be confirmed. Each property has a control that brings the defect back and
shows the test would see it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from hita.api import front, invalidation
from hita.app import create_app
from hita.appkeys import CACHE, CACHE_KEYS, COHERENCE, DATABASE
from hita.constants import DB_QUEUE_TIMEOUT_MS, USER_DETAILS
from hita.db.gate import STANDING_AFTER_S, PoolGate
from hita.db.shared_reads import SharedReads
from hita.domain.ids import is_user_id
from hita.domain.roles import Role
from hita.embedded import EmbeddedPostgres, EmbeddedRedis
from hita.errors import DatabaseUnavailable, Overloaded
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.integration.conftest import Account, World, open_account, until
from tests.integration.test_coherence import cached_guest, two_worlds
from tests.integration.test_overload import make_world

pytestmark = pytest.mark.slow

WARM_USERS = 30


@dataclass
class Warm:
    world: World
    redis: Redis
    admin: Account
    guests: list[Account]

    async def reads(self) -> list[tuple[int, Any]]:
        answers = []
        for guest in self.guests:
            response = await self.world.client.get(
                f"/v1.0/user/{guest.id}", headers=self.admin.headers
            )
            answers.append((response.status, await response.json()))
        return answers

    async def details_keys(self) -> int:
        return len([k async for k in self.redis.scan_iter(match=f"{USER_DETAILS}:*")])


@pytest.fixture
async def warm(
    aiohttp_client: AiohttpClient, private_postgres: EmbeddedPostgres, clean_redis: str
) -> AsyncIterator[Warm]:
    """30 users whose details an admin has read: all in Redis (and L1)."""
    config = make_config(
        DATABASE_URL=private_postgres.url,
        REDIS_URL=clean_redis,
        CACHE_SERVE_WHEN_DB_DOWN="true",
        DB_ACQUIRE_TIMEOUT_S="1",
        DB_CONNECT_TIMEOUT_S="1",
        DB_COMMAND_TIMEOUT_S="2",
    )
    app = create_app(config)
    world = World(await aiohttp_client(app), app, config, Tokens(config.auth))
    admin = await open_account(app, world.tokens, Role.ADMIN)
    guests = [await open_account(app, world.tokens, Role.USER) for _ in range(WARM_USERS)]
    await until(lambda: not app[CACHE].pending, "the new users' notifications were not applied")
    scene = Warm(world, Redis.from_url(clean_redis), admin, guests)
    assert {status for status, _ in await scene.reads()} == {200}
    yield scene
    await scene.redis.aclose()


async def failed_login_while_postgres_is_down(
    warm: Warm, private_postgres: EmbeddedPostgres
) -> tuple[int, int, int]:
    """Keys before the login, the login's status, keys after it; reads before
    and after must match."""
    private_postgres.stop()
    before = await warm.reads()
    keys_before = await warm.details_keys()
    response = await warm.world.client.post(
        "/v1.0/auth/login", json={"username": "anyone", "password": "whatever it is"}
    )
    keys_after = await warm.details_keys()
    assert await warm.reads() == before
    return keys_before, response.status, keys_after


async def test_a_failed_login_while_postgres_is_down_empties_nothing(
    warm: Warm, private_postgres: EmbeddedPostgres
) -> None:
    keys_before, status, keys_after = await failed_login_while_postgres_is_down(
        warm, private_postgres
    )
    assert status == 503
    assert keys_before == keys_after == WARM_USERS + 1  # the guests and the admin


async def test_control_a_5xx_widened_to_every_users_details_empties_the_family(
    warm: Warm, private_postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect back: a 5xx with no user id invalidated ``user_details:*``."""

    def widen(types: frozenset[str], status: int, user_id: str | None) -> Any:
        if not types or 400 <= status < 500:
            return None
        return types, user_id if is_user_id(user_id) else None

    monkeypatch.setattr(invalidation, "owed", widen)
    with pytest.raises(AssertionError):  # the reads after it no longer match
        await failed_login_while_postgres_is_down(warm, private_postgres)
    assert await warm.details_keys() == 0


# -- a committed write whose durable path fails --------------------------------


async def add_points_with_redis_paused_and_the_durable_path_overloaded(
    world: World, redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, int]:
    """Redis paused (the invalidation cannot be acknowledged), and the wait for
    the other instances refused (the database gate is full): status, content
    type, ledger rows committed."""
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()

    async def overloaded() -> bool:
        raise Overloaded(reason="database_queue_full")

    monkeypatch.setattr(world.app[COHERENCE], "confirm_delivery", overloaded)
    redis_server.process.pause()
    try:
        response = await world.client.post(
            f"/v1.0/points/{guest.id}/add",
            json={"amount": 10, "reason": "late checkout"},
            headers=admin.headers,
        )
        await response.read()
    finally:
        redis_server.process.resume()
    rows = await world.app[DATABASE].fetchval(
        "SELECT count(*) FROM points_transactions WHERE user_id = $1", guest.id
    )
    return response.status, response.content_type, int(rows)


@pytest.fixture
async def fast_world(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> World:
    """An app on a Redis the test owns, with a short invalidation budget."""
    config = make_config(
        DATABASE_URL=clean_database,
        REDIS_URL=own_redis.url,
        CACHE_INVALIDATION_BUDGET_MS="100",
    )
    app = create_app(config)
    return World(await aiohttp_client(app), app, config, Tokens(config.auth))


async def test_a_committed_write_keeps_its_2xx_whatever_its_invalidation_raises(
    fast_world: World, own_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, content_type, rows = await add_points_with_redis_paused_and_the_durable_path_overloaded(
        fast_world, own_redis, monkeypatch
    )
    assert (status, content_type, rows) == (200, "application/json", 1)


async def test_control_an_invalidation_that_raises_turns_the_commit_into_a_plain_500(
    fast_world: World, own_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect back: the invalidation's error escaped the middleware."""

    async def raising(app: Any, types: frozenset[str], user_id: str | None, xids: Any) -> None:
        if not await app[CACHE_KEYS].invalidate(types, user_id):
            await app[COHERENCE].confirm_delivery()

    monkeypatch.setattr(invalidation, "_invalidate", raising)
    status, content_type, rows = await add_points_with_redis_paused_and_the_durable_path_overloaded(
        fast_world, own_redis, monkeypatch
    )
    assert (status, content_type, rows) == (500, "text/plain", 1)


# -- one instance loses its own path to PostgreSQL ---------------------------------


async def read_on_the_cut_off_instance(
    a: World, b: World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> int:
    """B can no longer reach PostgreSQL (neither its session nor its pool),
    while A still can. What B answers for an entry it holds in Redis, once its
    lease has run out."""
    admin, guest = await cached_guest(a, b)

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("path lost")

    session = b.app[COHERENCE].session
    monkeypatch.setattr(session, "connect", unreachable)
    monkeypatch.setattr(b.app[DATABASE], "fetchrow", unreachable)
    monkeypatch.setattr(b.app[DATABASE], "fetch", unreachable)
    await terminate_backend(database_url, session.pid)
    await until(lambda: not b.app[CACHE].pending.trusted, "B's lease never ran out", 5)
    response = await b.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)
    return response.status


async def terminate_backend(database_url: str, pid: int | None) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


@pytest.fixture
async def serving_worlds(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> tuple[World, World]:
    return await two_worlds(
        aiohttp_client, clean_database, clean_redis, CACHE_SERVE_WHEN_DB_DOWN="true"
    )


async def test_an_instance_that_alone_lost_postgres_fails_closed(
    serving_worlds: tuple[World, World], clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = serving_worlds
    assert await read_on_the_cut_off_instance(a, b, clean_database, monkeypatch) == 503


async def test_control_taking_its_own_outage_for_everyones_serves_from_redis(
    serving_worlds: tuple[World, World], clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect back: B takes its own database error as 'down for everyone'."""
    a, b = serving_worlds

    async def nobody(member: str) -> bool:
        return False

    monkeypatch.setattr(b.app[CACHE], "others_reached_source", nobody)
    assert await read_on_the_cut_off_instance(a, b, clean_database, monkeypatch) == 200


# -- Redis paused while a small pool takes a burst ------------------------------

BURST_ADDS = 20


async def small_pool_world(
    aiohttp_client: AiohttpClient,
    database_url: str,
    redis_server: EmbeddedRedis,
    **settings: str,
) -> World:
    """A service whose pool holds two connections, on a Redis this test owns."""
    return await make_world(
        aiohttp_client,
        database_url,
        REDIS_URL=redis_server.url,
        DB_POOL_MAX_SIZE="2",
        DB_POOL_MIN_SIZE="1",
        **settings,
    )


async def burst_of_adds_with_redis_paused(
    aiohttp_client: AiohttpClient, database_url: str, redis_server: EmbeddedRedis
) -> tuple[list[tuple[int, str]], int]:
    """A pool of two connections, Redis paused (each request first waits out a
    Redis timeout, as long as its whole queue budget by default), 20 adds for
    20 users at once: every answer's status and type, and the ledger rows."""
    world = await small_pool_world(
        aiohttp_client,
        database_url,
        redis_server,
        DB_QUEUE_TIMEOUT_MS=str(DB_QUEUE_TIMEOUT_MS),  # the default, as long as a Redis timeout
    )
    app = world.app
    # One admin per add: each token check reads its own user's details, so
    # each request waits out its own Redis timeout before it needs the pool.
    admins = [await world.make_user(Role.ADMIN) for _ in range(BURST_ADDS)]
    guests = [await world.make_user() for _ in range(BURST_ADDS)]

    async def add(admin: Account, guest: Account) -> tuple[int, str]:
        response = await world.client.post(
            f"/v1.0/points/{guest.id}/add",
            json={"amount": 5, "reason": "burst"},
            headers=admin.headers,
        )
        await response.read()
        return response.status, response.content_type

    redis_server.process.pause()
    try:
        answers = await asyncio.gather(*map(add, admins, guests))
    finally:
        redis_server.process.resume()
    rows = await app[DATABASE].fetchval(
        "SELECT count(*) FROM points_transactions WHERE user_id = ANY($1::text[])",
        [guest.id for guest in guests],
    )
    return answers, int(rows)


async def test_a_burst_slowed_by_redis_is_served_by_a_small_pool(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> None:
    """Time spent on Redis is not time spent queueing: PostgreSQL is up and the
    pool turns over in milliseconds, so every add is served."""
    answers, rows = await burst_of_adds_with_redis_paused(aiohttp_client, clean_database, own_redis)
    assert answers == [(200, "application/json")] * BURST_ADDS
    assert rows == BURST_ADDS


class _DeadlineFromTheStart:
    """The budget as it was: a deadline from the request's start, so a Redis
    timeout spent it before the request reached the pool's queue."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    @property
    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def spend(self, seconds: float) -> None:
        pass


async def test_control_a_deadline_from_the_requests_start_refuses_the_burst(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    own_redis: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(front, "WaitBudget", _DeadlineFromTheStart)
    answers, rows = await burst_of_adds_with_redis_paused(aiohttp_client, clean_database, own_redis)
    assert (503, "application/json") in answers
    assert rows == sum(1 for status, _ in answers if status == 200)


# -- Redis paused while a small pool takes a burst of reads ---------------------

BURST_READERS = 20


async def each_read_alone(self: SharedReads[str, Any], key: str) -> Any:
    """``SharedReads.get`` without sharing: every read its own query."""
    return await self._fetch_one(self._db)(key)


async def burst_of_reads_with_redis_paused(
    aiohttp_client: AiohttpClient, database_url: str, redis_server: EmbeddedRedis
) -> tuple[list[bool], PoolGate]:
    """A pool of two connections, Redis paused, and 40 reads at once (20 admins
    each read a guest, 20 guests read themselves): two user reads from
    PostgreSQL each, the token's and the answer's. Whether each answer was the
    200 with the user asked for, and the pool's gate."""
    world = await small_pool_world(aiohttp_client, database_url, redis_server)
    admins = [await world.make_user(Role.ADMIN) for _ in range(BURST_READERS)]
    guests = [await world.make_user() for _ in range(BURST_READERS)]

    async def read(reader: Account, user: Account) -> bool:
        response = await world.client.get(f"/v1.0/user/{user.id}", headers=reader.headers)
        body = await response.json()
        return response.status == 200 and body["user"]["id"] == user.id

    gate = world.app[DATABASE].gate
    assert gate is not None
    redis_server.process.pause()
    try:
        answers = await asyncio.gather(*map(read, admins, guests), *map(read, guests, guests))
    finally:
        redis_server.process.resume()
    return answers, gate


async def test_reads_waiting_for_a_small_pool_share_their_queries(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> None:
    """80 user reads, each of which would wait for one of two connections,
    go as a few queries (``hita.db.shared_reads``): fewer waits than requests."""
    answers, gate = await burst_of_reads_with_redis_paused(
        aiohttp_client, clean_database, own_redis
    )
    assert answers == [True] * 2 * BURST_READERS
    assert gate.stats.shared_reads >= BURST_READERS
    assert gate.stats.waits < BURST_READERS, gate.stats


async def test_control_reads_each_their_own_query_wait_twice_a_request(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    own_redis: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect back: every read its own query, so nearly every one waits."""
    monkeypatch.setattr(SharedReads, "get", each_read_alone)
    answers, gate = await burst_of_reads_with_redis_paused(
        aiohttp_client, clean_database, own_redis
    )
    assert answers == [True] * 2 * BURST_READERS
    assert gate.stats.shared_reads == 0
    assert gate.stats.waits >= 2 * BURST_READERS, gate.stats


# -- a pool kept busy by steady clients takes a burst ----------------------------

STEADY_CLIENTS = 16
# Each request's budget for its waits, set out of reach here: these tests are
# about the standing rule (``PoolGate.stands``, the door's ``refusing_s``), the
# one that must tell a busy queue from a standing one. With the default 250 ms,
# a CPU-starved machine (CI on a shared host: 16 clients' two waits each took
# more than that) refused by budget, which is that rule working, not this one
# failing (the budget's own tests: tests/unit/test_gate.py).
OUT_OF_REACH_BUDGET_MS = 5_000


async def steady_clients_and_a_burst(
    aiohttp_client: AiohttpClient,
    database_url: str,
    redis_server: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Counter[int], PoolGate]:
    """Redis paused, so every request goes to a pool of two connections; 16
    clients read one request after another for 1.5 s, keeping the pool's queue
    occupied all along, and 20 adds arrive at once in the middle: every
    answer's status, and the pool's gate. The reads do not share queries
    (``SharedReads``), which would leave the queue nearly empty: these tests
    are about a queue that stays occupied, as one of writes or of other
    reads does."""
    monkeypatch.setattr(SharedReads, "get", each_read_alone)
    world = await small_pool_world(
        aiohttp_client,
        database_url,
        redis_server,
        DB_QUEUE_TIMEOUT_MS=str(OUT_OF_REACH_BUDGET_MS),
    )
    admin = await world.make_user(Role.ADMIN)
    guests = [await world.make_user() for _ in range(BURST_ADDS)]
    statuses: Counter[int] = Counter()

    async def call(method: str, path: str, headers: dict[str, str], **kw: Any) -> None:
        async with world.client.request(method, path, headers=headers, **kw) as response:
            await response.read()
            statuses[response.status] += 1

    async def steady(n: int, until_s: float) -> None:
        while time.monotonic() < until_s:
            guest = guests[n % len(guests)]
            await call("GET", f"/v1.0/user/{guest.id}", guest.headers)
            n += STEADY_CLIENTS

    redis_server.process.pause()
    try:
        until_s = time.monotonic() + 1.5
        clients = [asyncio.create_task(steady(n, until_s)) for n in range(STEADY_CLIENTS)]
        await asyncio.sleep(0.5)
        body = {"amount": 5, "reason": "burst"}
        adds = [call("POST", f"/v1.0/points/{g.id}/add", admin.headers, json=body) for g in guests]
        await asyncio.gather(*adds, *clients)
    finally:
        redis_server.process.resume()
    gate = world.app[DATABASE].gate
    assert gate is not None
    return statuses, gate


async def test_a_busy_pool_queue_serves_steady_clients_and_a_burst(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    own_redis: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The queue in front of the pool never empties for the whole run, but
    each wait is a few milliseconds: it is never judged standing, so no wait
    is cut short and nothing is refused."""
    statuses, gate = await steady_clients_and_a_burst(
        aiohttp_client, clean_database, own_redis, monkeypatch
    )
    assert set(statuses) == {200}, statuses
    assert gate.stats.waits > 200, gate.stats  # the queue was busy (2,104 to 5,240 waits here)
    assert gate.stats.standing_waits == 0, gate.stats


async def test_control_a_queue_that_has_not_emptied_counted_as_standing_refuses(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    own_redis: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect back: a queue not empty for 100 ms stands, so the same busy
    queue is judged standing and its waiters get 25 ms each. Whether one of
    them then waits past 25 ms and is refused depends on the machine's speed
    (14 runs of 20 here, 10 to 13 refusals each), so the cut waits are what
    is asserted: the test above asserts there are none."""
    monkeypatch.setattr(PoolGate, "stands", lambda self: self.standing_s() > STANDING_AFTER_S)
    monkeypatch.setattr(PoolGate, "refusing_s", PoolGate.standing_s)
    statuses, gate = await steady_clients_and_a_burst(
        aiohttp_client, clean_database, own_redis, monkeypatch
    )
    assert gate.stats.standing_waits > 100, (gate.stats, statuses)
