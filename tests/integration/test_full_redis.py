"""A Redis that is full: ``maxmemory`` with ``noeviction`` (writes refused, OOM)
and with ``allkeys-lru`` (entries, leases included, evicted under our feet).

Either way: no 5xx, no reader stalled behind a lease nobody will fill, no
lease left in Redis, the breaker closed (Redis answered every time), and the
refusals logged once per kind per interval with Redis's own words.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from hita.app import create_app
from hita.appkeys import CACHE, COHERENCE
from hita.cache.breaker import BreakerState
from hita.domain.roles import Role
from hita.embedded import EmbeddedRedis
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.helpers import state_of
from tests.integration.conftest import Account, World

LEASE_WAIT_MS = 3_000  # a reader stalled behind a lease would take at least this long
ROOM_BYTES = 150_000  # what is left under maxmemory once the test's data is in
JUNK_VALUE = b"x" * 2_048
EDGE_BYTES = 200


@pytest.fixture
async def world(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> World:
    config = make_config(
        DATABASE_URL=clean_database,
        REDIS_URL=own_redis.url,
        CACHE_LEASE_WAIT_MS=str(LEASE_WAIT_MS),
    )
    app = create_app(config)
    return World(await aiohttp_client(app), app, config, Tokens(config.auth))


@pytest.fixture
async def admin_redis(own_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


async def fill_up(redis: Redis, policy: str) -> None:
    """Set the limit just above what is used, then fill Redis up with junk."""
    await redis.config_set("maxmemory-policy", policy)
    used = (await redis.info("memory"))["used_memory"]
    await redis.config_set("maxmemory", str(used + ROOM_BYTES))
    for i in range(2 * ROOM_BYTES // len(JUNK_VALUE)):
        try:
            await redis.set(f"junk:{i}", JUNK_VALUE)
        except OutOfMemoryError:
            return
    assert policy != "noeviction", "Redis never refused a write"


async def leases_left(redis: Redis) -> list[bytes]:
    left = []
    async for name in redis.scan_iter(count=1_000):
        if not name.startswith(b"junk:"):
            raw = await redis.get(name)
            if isinstance(raw, bytes) and raw.startswith(b"l"):
                left.append(name)
    return left


async def to_the_edge(redis: Redis) -> None:
    """Room for a lease (about 100 bytes), none for a value: the issue's case,
    where the lease is taken and the fill that follows is refused."""
    used = (await redis.info("memory"))["used_memory"]
    await redis.config_set("maxmemory", str(used + EDGE_BYTES))


async def traffic(
    world: World, admin: Account, guests: list[Account], redis: Redis | None
) -> list[tuple[int, float]]:
    """One by one (so any lease wait is a stall): each guest reads itself twice
    (its token check reads its own record too), changes its name, reads again;
    the admin reads the list, the statistics and each guest. With ``redis``,
    each request starts with Redis at the edge of its memory."""
    answers: list[tuple[int, float]] = []

    async def call(method: str, path: str, who: Account, json: object = None) -> None:
        if redis is not None:
            await to_the_edge(redis)
        started = time.perf_counter()
        response = await world.client.request(method, path, headers=who.headers, json=json)
        await response.read()
        answers.append((response.status, time.perf_counter() - started))

    for round_ in range(2):
        for guest in guests:
            await call("GET", f"/v1.0/user/{guest.id}", guest)
            await call("GET", f"/v1.0/user/{guest.id}", guest)
            body = {"full_name": f"Renamed Guest {round_}"}
            await call("PATCH", f"/v1.0/user/update/{guest.id}", guest, body)
            await call("GET", f"/v1.0/user/{guest.id}", guest)
            await call("GET", f"/v1.0/user/{guest.id}", admin)
        await call("GET", "/v1.0/user/list", admin)
        await call("GET", "/v1.0/user/stats", admin)
        await call("GET", "/v1.0/dashboard/stats", admin)
    return answers


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
async def test_a_full_redis_costs_no_5xx_no_stall_and_no_breaker(
    world: World, admin_redis: Redis, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await world.make_user(Role.ADMIN)
    guests = [await world.make_user() for _ in range(6)]
    cache = world.app[CACHE]
    await fill_up(admin_redis, policy)

    with caplog.at_level(logging.WARNING, logger="hita.cache.client"):
        started = time.monotonic()
        edge = admin_redis if policy == "noeviction" else None
        answers = await traffic(world, admin, guests, edge)
        elapsed = time.monotonic() - started

    statuses = sorted({status for status, _ in answers})
    slowest = max(seconds for _, seconds in answers)
    print(f"{policy}: {len(answers)} answers {statuses}, slowest {slowest * 1000:.0f} ms")
    assert statuses == [200]
    assert state_of(cache.breaker) is BreakerState.CLOSED
    assert sum(c.lease_waits for c in cache.stats.types.values()) == 0
    assert slowest * 1000 < LEASE_WAIT_MS / 3  # nobody waited for a lease
    assert await leases_left(admin_redis) == []

    refusals = [r for r in caplog.records if r.levelno >= logging.ERROR]
    if policy == "noeviction":
        assert cache.errors.last is not None
        assert cache.errors.last.reason.startswith("OOM command not allowed")
        assert "OOM command not allowed" in refusals[0].getMessage()
        # One line per kind per interval, however many requests were refused.
        allowed = 1 + int(elapsed // cache.errors.interval_s)
        assert 1 <= len(refusals) <= allowed
        assert sum(c.errors for c in cache.stats.types.values()) > len(refusals)
    else:
        assert refusals == []  # room is made by eviction: nothing refused


async def test_a_redis_full_to_the_last_byte_still_takes_every_invalidation(
    world: World, admin_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No write at all fits, yet a write's invalidation is acknowledged: an
    entry is UNLINKed and a namespace's generation is bumped by deleting it,
    and a full Redis still allows deletions. So the writer does not wait on the
    barrier and nothing stays suspect (which would send every read of the lists
    and statistics to PostgreSQL until Redis had room again)."""
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    for path in (f"/v1.0/user/{guest.id}", "/v1.0/user/list", "/v1.0/dashboard/stats"):
        assert (await world.client.get(path, headers=admin.headers)).status == 200  # cached
    await admin_redis.config_set("maxmemory-policy", "noeviction")
    used = (await admin_redis.info("memory"))["used_memory"]
    await admin_redis.config_set("maxmemory", str(used // 2))  # over the limit already
    with pytest.raises(OutOfMemoryError):
        await admin_redis.set("one:more", b"x")  # full: no write is taken

    cache, coherence = world.app[CACHE], world.app[COHERENCE]
    barriers: list[bool] = []
    confirm = coherence.confirm_delivery

    async def counted_confirm() -> bool:
        barriers.append(await confirm())
        return barriers[-1]

    monkeypatch.setattr(coherence, "confirm_delivery", counted_confirm)
    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "Full Name"}, headers=admin.headers
    )
    assert response.status == 200
    assert barriers == []  # Redis acknowledged the invalidation itself
    assert not cache.pending
    body = await (await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)).json()
    assert body["user"]["full_name"] == "Full Name"
