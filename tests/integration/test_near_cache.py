"""L1, the near cache: what it spares Redis, and that it never shows older data
than an acknowledged write, on any instance (tracking on, killed, Redis paused)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from hita.appkeys import CACHE
from hita.cache.near import REDIS_FLUSHED, NearCache
from hita.domain.roles import Role
from hita.embedded import EmbeddedRedis
from tests.integration.cache.test_scale import calls_since, command_calls
from tests.integration.conftest import Account, World, body_of
from tests.integration.test_coherence import settled, two_worlds

pytestmark = pytest.mark.slow


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis)
    yield client
    await client.aclose()


async def tracking_on(*worlds: World) -> None:
    deadline = time.monotonic() + 10
    for world in worlds:
        tracking = world.app[CACHE].tracking
        assert tracking is not None
        while not tracking.active:
            assert time.monotonic() < deadline, "tracking never came up"
            await asyncio.sleep(0.01)


async def get(world: World, caller: Account, path: str) -> Any:
    response = await world.client.get(path, headers=caller.headers)
    assert response.status == 200, path
    return await body_of(response)


async def warm(world: World, caller: Account, path: str) -> None:
    """``path`` read until L1 holds what it reads (the token check's too)."""
    for _ in range(3):  # fill Redis, then L1 (our own fill's echo drops the first copy)
        await get(world, caller, path)
    await settled(world)
    for _ in range(2):
        await get(world, caller, path)


async def l1_hits(world: World, caller: Account, path: str, times: int = 1) -> int:
    """L1 hits of ``times`` reads of ``path``."""
    near = world.app[CACHE].near
    assert near is not None
    hits = near.stats.hits
    for _ in range(times):
        await get(world, caller, path)
    return near.stats.hits - hits


async def test_a_warm_l1_answers_with_no_redis_command_and_a_cold_one_with_no_script(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str, redis: Redis
) -> None:
    world, _ = await two_worlds(
        aiohttp_client, clean_database, clean_redis, CACHE_L1_ENABLED="true"
    )
    await tracking_on(world)
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    path = f"/v1.0/user/{guest.id}"
    await warm(world, admin, path)

    before = await command_calls(redis)
    for _ in range(10):
        await get(world, admin, path)
    assert await calls_since(redis, before) == {}  # the token check and the read: from L1

    cache = world.app[CACHE]
    assert cache.near is not None
    cache.near.flush(REDIS_FLUSHED)
    before = await command_calls(redis)
    await get(world, admin, path)
    calls = await calls_since(redis, before)
    assert "evalsha" not in calls
    assert "eval" not in calls
    assert calls == {"mget": 1}  # two hits (caller and user) in one round trip


async def world_without_l1(
    aiohttp_client: AiohttpClient, database_url: str, redis_url: str
) -> World:
    world, _ = await two_worlds(aiohttp_client, database_url, redis_url, CACHE_L1_ENABLED="false")
    return world


async def test_without_l1_the_token_check_and_the_read_share_one_round_trip(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str, redis: Redis
) -> None:
    world = await world_without_l1(aiohttp_client, clean_database, clean_redis)
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    for caller, path in ((admin, f"/v1.0/user/{guest.id}"), (guest, f"/v1.0/user/{guest.id}")):
        await get(world, caller, path)  # fill
    before = await command_calls(redis)
    pipe = world.app[CACHE].read_pipe
    assert pipe is not None, "on one server, plain reads are pipelined"
    reads = pipe.reads
    body = await get(world, admin, f"/v1.0/user/{guest.id}")
    assert body["user"]["id"] == guest.id
    assert await calls_since(redis, before) == {"mget": 1}  # caller and user together
    assert pipe.reads == reads + 1  # that MGET, through the read pipe
    before = await command_calls(redis)
    await get(world, guest, f"/v1.0/user/{guest.id}")  # the caller is the user: one key
    assert await calls_since(redis, before) == {"mget": 1}  # read once, for both reads
    # A guest may not read another user: nothing is read ahead for it.
    before = await command_calls(redis)
    response = await world.client.get(f"/v1.0/user/{admin.id}", headers=guest.headers)
    assert response.status == 403
    assert await calls_since(redis, before) == {"get": 1}


async def test_a_namespaced_hit_is_one_mget_of_generation_and_entry(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str, redis: Redis
) -> None:
    world = await world_without_l1(aiohttp_client, clean_database, clean_redis)
    admin = await world.make_user(Role.ADMIN)
    for path in ("/v1.0/dashboard/stats", "/v1.0/user/list?page=1"):
        for _ in range(2):  # fill, then learn the generation from a scripted hit
            await get(world, admin, path)
        before = await command_calls(redis)
        await get(world, admin, path)
        calls = await calls_since(redis, before)
        # The caller's details (GET), then the generation and the entry together (MGET).
        assert calls == {"get": 1, "mget": 1}, path


def test_l1_evicts_and_stays_within_its_byte_bound() -> None:
    near = NearCache(max_entries=100, max_bytes=10_000)
    for i in range(1_000):
        near.put(f"user_details:{i:010d}", b"v" + b"x" * 199, near.seq)
        assert len(near) <= 100
        assert near.size_bytes <= 10_000
    assert len(near) == 50  # 200-byte entries: the byte bound bites first
    assert near.stats.evictions == 950
    assert near.get("user_details:0000000999") is not None  # the newest stay
    assert near.get("user_details:0000000000") is None


def test_a_value_read_while_its_key_was_invalidated_is_not_kept() -> None:
    near = NearCache(max_entries=100, max_bytes=100_000)
    began = near.seq
    near.invalidate(["user_details:0000000001"])  # arrives while the read is in flight
    near.put("user_details:0000000001", b"old", began)
    near.put("user_details:0000000002", b"other", began)
    assert near.get("user_details:0000000001") is None
    assert near.get("user_details:0000000002") == b"other"


# -- two instances, L1 on: B reads from L1, A writes, B's next read shows it ----------


async def views_on(
    world: World, admin: Account, guest: Account, page_size: int = 100
) -> dict[str, Any]:
    details = (await get(world, admin, f"/v1.0/user/{guest.id}"))["user"]
    listing = await get(world, admin, f"/v1.0/user/list?page=1&page_size={page_size}")
    listed = next(u for u in listing["users"] if u["id"] == guest.id)
    stats = (await get(world, admin, "/v1.0/user/stats"))["stats"]
    dashboard = (await get(world, admin, "/v1.0/dashboard/stats"))["stats"]
    return {
        "details": details["points"],
        "list": listed["points"],
        "stats": stats["total_points"],
        "dashboard": dashboard["points_issued_last_30_days"],
    }


async def write_and_read(
    a: World, b: World, people: tuple[Account, Account, Account], round_: int
) -> list[str]:
    """One write through A; what B shows next. Returns the views that were stale."""
    admin, guest, other = people
    await views_on(b, admin, guest)  # B holds them (L1 after the first rounds)
    response = await a.client.post(
        f"/v1.0/points/{guest.id}/add", json={"amount": 1, "reason": "stay"}, headers=admin.headers
    )
    assert response.status == 200
    views = await views_on(b, admin, guest)
    stale = [name for name, points in views.items() if points != round_]
    action = "deactivate" if round_ % 2 else "activate"
    assert (await a.client.post(f"/v1.0/user/{other.id}/{action}", headers=admin.headers)).ok
    status = (await b.client.get(f"/v1.0/user/{other.id}", headers=other.headers)).status
    if status != (401 if round_ % 2 else 200):
        stale.append("token")
    return stale


async def two_with_l1(
    aiohttp_client: AiohttpClient, database_url: str, redis_url: str, **overrides: str
) -> tuple[World, World, Account, Account, Account]:
    a, b = await two_worlds(
        aiohttp_client, database_url, redis_url, CACHE_L1_ENABLED="true", **overrides
    )
    await tracking_on(a, b)
    admin = await a.make_user(Role.ADMIN)
    guest = await a.make_user()
    other = await a.make_user()
    return a, b, admin, guest, other


async def test_l1_never_shows_older_data_than_an_acknowledged_write_200_times(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    a, b, admin, guest, other = await two_with_l1(aiohttp_client, clean_database, clean_redis)
    stale = []
    for round_ in range(1, 201):
        views = await write_and_read(a, b, (admin, guest, other), round_)
        stale += [(round_, view) for view in views]
    assert stale == []
    near = b.app[CACHE].near
    assert near is not None
    assert near.stats.hits > 200  # B really served from L1


async def test_l1_with_its_tracking_connection_killed_again_and_again(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str, redis: Redis
) -> None:
    a, b, admin, guest, other = await two_with_l1(aiohttp_client, clean_database, clean_redis)
    tracking = b.app[CACHE].tracking
    assert tracking is not None
    stale = []
    for round_ in range(1, 41):
        if round_ % 5 == 0 and tracking.client_id is not None:
            await redis.client_kill_filter(_id=str(tracking.client_id))
        views = await write_and_read(a, b, (admin, guest, other), round_)
        stale += [(round_, view) for view in views]
    assert stale == []
    assert tracking.connections >= 2  # it came back by itself


async def test_l1_with_redis_paused_during_the_write(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> None:
    a, b, admin, guest, _ = await two_with_l1(
        aiohttp_client,
        clean_database,
        own_redis.url,
        CACHE_BREAKER_FAILURES="1",
        CACHE_BREAKER_OPEN_S="0.2",
        CACHE_INVALIDATION_BUDGET_MS="300",
    )
    stale = []
    try:
        for round_ in range(1, 7):
            await views_on(b, admin, guest)
            own_redis.process.pause()
            response = await a.client.post(
                f"/v1.0/points/{guest.id}/add",
                json={"amount": 1, "reason": "stay"},
                headers=admin.headers,
            )
            assert response.status == 200
            views = await views_on(b, admin, guest)
            own_redis.process.resume()
            stale += [(round_, n) for n, points in views.items() if points != round_]
            views = await views_on(b, admin, guest)
            stale += [(round_, n) for n, points in views.items() if points != round_]
    finally:
        own_redis.process.resume()
    assert stale == []


def test_each_cache_type_has_its_own_bound() -> None:
    near = NearCache(max_entries=10, max_bytes=100_000)
    for i in range(10):
        near.put(f"user_details:{i:010d}", b"v-details", near.seq, cache_type="user_details")
    for page in range(1_000):  # a burst of list pages
        near.put(f"user_list:{{user_list}}:gA:p{page}", b"v-page", near.seq, cache_type="user_list")
    assert all(near.get(f"user_details:{i:010d}") == b"v-details" for i in range(10))
    assert len(near) == 20  # ten of each type
    assert near.stats.evictions == 990  # all of them list pages
    near.invalidate(["user_details:0000000003"])
    assert near.get("user_details:0000000003") is None
    assert len(near) == 19
    assert near.size_bytes == 9 * len(b"v-details") + 10 * len(b"v-page")
