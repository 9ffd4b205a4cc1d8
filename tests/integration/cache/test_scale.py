"""A real Redis with many keys: no KEYS, and O(1) namespace invalidation."""

from __future__ import annotations

import pytest

from hita.cache.codec import MISS
from hita.cache.connection import RedisClient
from hita.cache.keys import KeyBuilder
from tests.conftest import RedisTarget
from tests.integration.cache.conftest import Backend, real_backend_factory

pytestmark = pytest.mark.slow

KEYS = KeyBuilder()


async def command_calls(redis: RedisClient) -> dict[str, int]:
    """Calls per command, but INFO and CONFIG (these checks' own) and PING (L1's
    keepalive on its subscriber, which runs on its own clock)."""
    stats = await redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config", "cmdstat_ping")
    }


async def calls_since(redis: RedisClient, before: dict[str, int]) -> dict[str, int]:
    """Commands run since ``before`` was taken (never CONFIG RESETSTAT: the
    session's check for KEYS and FLUSH* reads the totals at the end)."""
    after = await command_calls(redis)
    return {name: n - before.get(name, 0) for name, n in after.items() if n != before.get(name, 0)}


async def populate(redis: RedisClient, count: int, prefix: str) -> None:
    """``count`` keys ``<prefix>:<n>``, made by Redis itself in one command."""
    await redis.execute_command("DEBUG", "POPULATE", count, prefix)


@pytest.fixture
async def real(redis_url: str) -> Backend:
    return await real_backend_factory(RedisTarget("standalone", {"REDIS_URL": redis_url}))


async def test_delete_pattern_on_100k_keys_uses_scan_and_unlink_never_keys(real: Backend) -> None:
    cache = real.make()
    try:
        await populate(real.redis, 100_000, "user_details")
        await real.redis.set("user_stats:keep", b"x")
        assert await real.redis.dbsize() == 100_001
        before = await command_calls(real.redis)
        assert await cache.delete_pattern("user_details:*") == 100_000
        calls = await calls_since(real.redis, before)
        assert "keys" not in calls
        assert calls["scan"] >= 100
        assert 100 <= calls["unlink"] <= 101  # batches of ~1000, plus a remainder
        assert await real.redis.dbsize() == 1
    finally:
        await real.close()


@pytest.mark.parametrize("entries", [10, 100_000])
async def test_namespace_invalidation_is_one_command_whatever_the_key_count(
    real: Backend, entries: int
) -> None:
    cache = real.make()
    try:
        page = KEYS.namespaced("user_list", page=1)
        await cache.get_or_load(page, _value, ttl=60)  # creates the generation
        raw_generation = await real.redis.get(page.namespace.generation_key)
        assert isinstance(raw_generation, bytes)
        generation = raw_generation.decode()
        await populate(real.redis, entries, page.namespace.data_key(generation, "p"))
        before = await command_calls(real.redis)
        assert await cache.invalidate_namespace(page.namespace)
        # One UNLINK of the generation, whatever the entries: the next read makes a new one.
        assert await calls_since(real.redis, before) == {"unlink": 1}
        assert await cache.get(page) is MISS  # the old generation's entries are never read
        assert (await cache.get_many([])) == []
    finally:
        await real.close()


async def _value() -> list[str]:
    return ["entry"]
