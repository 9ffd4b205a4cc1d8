"""The cache management endpoints on every topology: INFO summed over a
cluster's primaries, key counts and clears over every primary, no KEYS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from hita.cache import topology
from hita.cache.connection import RedisClient
from hita.config import Config
from hita.constants import CACHE_TYPES
from hita.domain.roles import Role
from hita.embedded import EmbeddedRedis
from tests.conftest import RedisTarget, forbidden_calls
from tests.integration.conftest import World, body_of

EXPECTED = {
    "standalone": ("standalone", 1),
    "cluster": ("cluster", 3),
    "sentinel": ("standalone", 1),
}


@pytest.fixture
def config(topology_config: Config) -> Config:
    return topology_config


@pytest.fixture
async def raw(redis_target: RedisTarget) -> AsyncIterator[RedisClient]:
    client = redis_target.client()
    yield client
    await topology.close(client)


async def keys_of(raw: RedisClient, pattern: str) -> list[bytes]:
    return [k async for k in topology.scan_keys(raw, pattern, 100)]


async def test_detailed_health_stats_and_clear_cover_every_primary(
    world: World, raw: RedisClient, redis_target: RedisTarget
) -> None:
    admin = await world.make_user(Role.ADMIN)
    guests = [await world.make_user() for _ in range(20)]
    for guest in guests:  # details spread over every slot range
        response = await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)
        assert response.status == 200
    for path in ("/v1.0/user/list", "/v1.0/user/stats", "/v1.0/dashboard/stats"):
        assert (await world.client.get(path, headers=admin.headers)).status == 200
    await raw.set("other_app:session:1", b"keep")

    detailed = await body_of(
        await world.client.get("/v1.0/cache/health/detailed", headers=admin.headers)
    )
    statistics = detailed["detailed_statistics"]
    assert (statistics["redis_mode"], statistics["redis_nodes"]) == EXPECTED[redis_target.name]
    assert statistics["performance"]["keyspace_hits"] > 0
    details = await keys_of(raw, "user_details:*")
    assert statistics["key_counts"]["user_details_keys"] == len(details) == 21
    assert statistics["key_counts"]["estimated"] is False
    assert topology.is_cluster(raw) is (redis_target.name == "cluster")
    if topology.is_cluster(raw):  # the entries really are spread over the primaries
        per_node = await topology.info_per_node(raw, "keyspace")
        assert sum(1 for info in per_node.values() if info.get("db0")) == 3

    stats = await body_of(await world.client.get("/v1.0/cache/stats", headers=admin.headers))
    assert stats["key_counts"] == statistics["key_counts"]

    ours = [k for k in await keys_of(raw, "*") if k.split(b":")[0].decode() in CACHE_TYPES]
    cleared = await body_of(await world.client.post("/v1.0/cache/clear", headers=admin.headers))
    assert cleared["keys_deleted"] == len(ours)
    assert await keys_of(raw, "*") == [b"other_app:session:1"]
    assert await topology.dbsize(raw) == 1


async def test_the_sessions_commandstats_check_sees_a_flush(own_redis: EmbeddedRedis) -> None:
    """The check every session ends with (tests/conftest.py) can fail: a FLUSHDB
    or KEYS on a server shows in its INFO commandstats."""
    assert forbidden_calls([own_redis.url]) == {}
    client = Redis.from_url(own_redis.url)
    try:
        await client.keys("*")
        await client.flushdb()
    finally:
        await client.aclose()
    assert forbidden_calls([own_redis.url]) == {own_redis.url: {"keys": 1, "flushdb": 1}}
