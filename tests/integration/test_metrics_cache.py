"""The metrics of what this design adds move as they should, over a real
PostgreSQL and Redis: an L1 hit counts as an L1 hit (per type and per route),
killing the tracking connection (CLIENT KILL) shows as an L1 flush with its
reason and a reconnect, and a write while Redis is paused (SIGSTOP) shows as
a pending invalidation with an age, a writer's wait, then an acknowledgement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from hita.app import create_app
from hita.appkeys import CACHE
from hita.domain.roles import Role
from hita.embedded import EmbeddedRedis
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.integration.conftest import Account, World, body_of, notifications_settled, until
from tests.integration.test_metrics import scrape, value
from tests.integration.test_near_cache import tracking_on

pytestmark = pytest.mark.slow

USER_ROUTE = "/v1.0/user/{user_id}"


async def l1_world(aiohttp_client: AiohttpClient, database_url: str, redis_url: str) -> World:
    """An app with L1 on whatever ``TEST_CACHE_L1_ENABLED`` says."""
    config = make_config(DATABASE_URL=database_url, REDIS_URL=redis_url, CACHE_L1_ENABLED="true")
    app = create_app(config)
    world = World(await aiohttp_client(app), app, config, Tokens(config.auth))
    await tracking_on(world)
    return world


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis)
    yield client
    await client.aclose()


async def warm_in_l1(world: World, admin: Account, path: str) -> None:
    """Fill Redis, then L1 (the fill's own tracking echo drops the first copy)."""
    for _ in range(3):
        assert (await world.client.get(path, headers=admin.headers)).status == 200
    await notifications_settled(world)
    for _ in range(2):
        assert (await world.client.get(path, headers=admin.headers)).status == 200


async def test_an_l1_hit_counts_as_l1_per_type_and_per_route(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await l1_world(aiohttp_client, clean_database, clean_redis)
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    await warm_in_l1(world, admin, f"/v1.0/user/{guest.id}")
    before = await scrape(world)
    response = await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)
    assert response.status == 200
    after = await scrape(world)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Two reads of user_details: the token check's (the admin) and the answer's (the guest).
    assert moved("hita_cache_l1_hits_total", type="user_details") == 2
    assert moved("hita_cache_hits_total", type="user_details") == 2
    assert moved("hita_cache_l1_misses_total", type="user_details") == 0
    assert moved("hita_cache_misses_total", type="user_details") == 0
    assert moved("hita_cache_route_reads_total", route=USER_ROUTE, tier="l1") == 2
    assert moved("hita_cache_route_reads_total", route=USER_ROUTE, tier="redis") == 0
    assert moved("hita_cache_route_reads_total", route=USER_ROUTE, tier="miss") == 0
    assert value(after, "hita_cache_l1_entries", type="user_details") >= 2
    assert value(after, "hita_cache_l1_bytes", type="user_details") > 0
    assert value(after, "hita_cache_l1_enabled") == 1


async def test_killing_the_tracking_connection_shows_as_a_flush_with_its_reason(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str, redis: Redis
) -> None:
    world = await l1_world(aiohttp_client, clean_database, clean_redis)
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    await warm_in_l1(world, admin, f"/v1.0/user/{guest.id}")
    cache = world.app[CACHE]
    tracking = cache.tracking
    assert tracking is not None
    assert tracking.client_id is not None
    assert cache.near is not None
    held = len(cache.near)
    assert held >= 2
    before = await scrape(world)
    assert value(before, "hita_cache_tracking_connected") == 1

    connections = tracking.connections
    assert await redis.client_kill_filter(_id=str(tracking.client_id)) == 1
    await until(lambda: tracking.connections > connections, "tracking never reconnected")
    await until(lambda: tracking.active, "tracking never came back")
    after = await scrape(world)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("hita_cache_l1_flushes_total", reason="tracking_lost") >= 1
    for reason in ("breaker_open", "redis_flushed", "pattern_invalidation"):
        assert moved("hita_cache_l1_flushes_total", reason=reason) == 0, reason
    assert moved("hita_cache_l1_evictions_total", reason="flush") >= held
    assert moved("hita_cache_tracking_connections_total") == 1
    assert value(after, "hita_cache_tracking_connected") == 1
    # The console reads the same from /cache/stats.
    body = await body_of(await world.client.get("/v1.0/cache/stats", headers=admin.headers))
    l1 = body["instance"]["l1"]
    assert l1["flushes"]["tracking_lost"] == cache.near.stats.flush_reasons["tracking_lost"] >= 1
    assert l1["tracking"] == "connected"
    assert l1["tracking_connections"] == connections + 1


async def test_a_write_while_redis_is_paused_shows_as_pending_then_acknowledged(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> None:
    world = await l1_world(aiohttp_client, clean_database, own_redis.url)
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user(full_name="Old Name")
    await warm_in_l1(world, admin, f"/v1.0/user/{guest.id}")
    cache = world.app[CACHE]
    before = await scrape(world)
    assert value(before, "hita_cache_pending_invalidations") == 0

    own_redis.process.pause()
    try:
        response = await world.client.patch(
            f"/v1.0/user/update/{guest.id}", json={"full_name": "New Name"}, headers=admin.headers
        )
        assert response.status == 200  # after the durable path confirmed it
        retries = cache.stats.invalidation_retries
        await until(
            lambda: cache.stats.invalidation_retries > retries, "the applier never retried", 5
        )
        await until(lambda: not cache.available, "the breaker never opened", 10)
        during = await scrape(world)
        # The console sees it too: /cache/stats is a 503 that carries the instance.
        paused = await world.client.get("/v1.0/cache/stats", headers=admin.headers)
        assert paused.status == 503
        coherence = (await paused.json())["instance"]["coherence"]
    finally:
        own_redis.process.resume()

    def moved(
        snapshot: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
    ) -> float:
        return value(snapshot, name, **labels) - value(before, name, **labels)

    assert value(during, "hita_cache_pending_invalidations") >= 1
    assert value(during, "hita_cache_pending_invalidation_age_seconds") > 0
    assert moved(during, "hita_cache_invalidations_sent_total") >= 1
    assert moved(during, "hita_cache_invalidation_retries_total") >= 1
    assert moved(during, "hita_cache_coherence_waits_total", outcome="confirmed") == 1
    assert moved(during, "hita_cache_coherence_wait_seconds_total") > 0
    assert moved(during, "hita_cache_invalidations_acknowledged_total", stage="background") == 0
    assert coherence["pending_invalidations"] >= 1
    assert coherence["oldest_pending_s"] > 0

    await until(lambda: not cache.pending, "the pending invalidation was never applied", 20)
    after = await scrape(world)
    assert value(after, "hita_cache_pending_invalidations") == 0
    assert value(after, "hita_cache_pending_invalidation_age_seconds") == 0
    assert moved(after, "hita_cache_invalidations_acknowledged_total", stage="background") >= 1
    assert moved(after, "hita_cache_l1_flushes_total", reason="breaker_open") >= 1
