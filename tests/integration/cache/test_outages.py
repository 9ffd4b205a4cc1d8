"""Redis going away: the breaker, fallbacks, and invalidations kept until Redis is back."""

from __future__ import annotations

import asyncio
import time

import pytest

from hita.cache.breaker import BreakerState
from hita.cache.client import RedisCache
from hita.cache.codec import MISS
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.config import BreakerConfig
from hita.embedded import EmbeddedRedis
from tests.conftest import make_config
from tests.helpers import state_of
from tests.integration.cache.conftest import Backend, cache_config
from tests.integration.cache.test_behaviour import USER, Loader

KEYS = KeyBuilder()


def breaker(threshold: int, open_s: float) -> BreakerConfig:
    return BreakerConfig(failure_threshold=threshold, open_s=open_s)


def real_cache(server: EmbeddedRedis, **changes: object) -> RedisCache:
    config = make_config(REDIS_URL=server.url)
    return RedisCache(create_redis(config.redis), cache_config(**changes), KeyBuilder())


async def test_the_breaker_opens_and_then_spares_the_network(fake_backend: Backend) -> None:
    cache = fake_backend.make()
    fake_backend.disconnect()
    for _ in range(20):
        assert await cache.get(USER) is MISS
    assert state_of(cache.breaker) is BreakerState.OPEN
    # Only the calls before it opened reached the (dead) network.
    assert cache.stats["user_details"].errors == cache.breaker.failure_threshold
    assert cache.stats.breaker_transitions == {"closed->open": 1}


async def test_reads_fall_through_to_the_loader_while_redis_is_down(
    fake_backend: Backend,
) -> None:
    cache = fake_backend.make()
    fake_backend.disconnect()
    loader = Loader({"from": "postgres"})
    for _ in range(3):
        assert await cache.get_or_load(USER, loader, ttl=60) == {"from": "postgres"}
    assert loader.calls == 3


async def test_the_breaker_closes_after_a_successful_probe_no_request_waits_for(
    fake_backend: Backend,
) -> None:
    cache = fake_backend.make(breaker=breaker(1, 0.05))
    fake_backend.disconnect()
    await cache.get(USER)
    assert state_of(cache.breaker) is BreakerState.OPEN
    fake_backend.reconnect()
    await asyncio.sleep(0.06)
    assert not await cache.set(USER, 1, ttl=60)  # refused: the probe runs apart from it
    assert state_of(cache.breaker) is not BreakerState.OPEN
    for _ in range(100):
        if state_of(cache.breaker) is BreakerState.CLOSED:
            break
        await asyncio.sleep(0.01)
    assert state_of(cache.breaker) is BreakerState.CLOSED
    assert await cache.set(USER, 1, ttl=60)
    assert await cache.get(USER) == 1


async def test_a_deferred_delete_is_never_read_past_and_is_applied(fake_backend: Backend) -> None:
    cache = fake_backend.make(breaker=breaker(1, 0.0))
    await cache.set(USER, {"name": "old"}, ttl=60)
    fake_backend.disconnect()
    assert not await cache.delete(USER)
    assert list(cache.pending.keys) == [USER.redis_key]
    fake_backend.reconnect()
    assert await cache.get(USER) is MISS  # suspect: not even asked of Redis
    loader = Loader({"name": "new"})
    assert await cache.get_or_load(USER, loader, ttl=60) == {"name": "new"}
    await wait_until_applied(cache)
    assert await fake_backend.redis.exists(USER.redis_key) == 0


async def wait_until_applied(cache: RedisCache) -> None:
    """Poll the background applier (it backs off to 0.5 s while Redis is away)."""
    for _ in range(300):
        if not cache.pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still pending: {cache.pending}")


async def test_a_deferred_namespace_invalidation_is_applied_before_the_next_read(
    fake_backend: Backend,
) -> None:
    cache = fake_backend.make(breaker=breaker(1, 0.0))
    page = KEYS.namespaced("user_list", page=1)
    await cache.get_or_load(page, Loader(["old"]), ttl=60)
    fake_backend.disconnect()
    assert not await cache.invalidate_namespace(page.namespace)
    fake_backend.reconnect()
    assert await cache.get_or_load(page, Loader(["new"]), ttl=60) == ["new"]


async def test_too_many_pending_users_invalidate_the_whole_family(fake_backend: Backend) -> None:
    cache = fake_backend.make(breaker=breaker(1, 0.0), pending_max_users=3)
    users = [KEYS.key("user_details", f"{i:010d}") for i in range(10)]
    for user in users:
        await cache.set(user, "old", ttl=60)
    fake_backend.disconnect()
    for user in users[:5]:
        await cache.delete(user)
    assert set(cache.pending.patterns) == {"user_details:*"}
    fake_backend.reconnect()
    assert await cache.get_many(users) == [MISS] * 10


async def test_pending_invalidations_are_retried_in_the_background(
    fake_backend: Backend,
) -> None:
    cache = fake_backend.make(breaker=breaker(1, 0.01))
    await cache.set(USER, "old", ttl=60)
    fake_backend.disconnect()
    await cache.delete(USER)
    fake_backend.reconnect()
    await wait_until_applied(cache)
    assert await fake_backend.redis.exists(USER.redis_key) == 0  # no read was needed


async def test_a_deferred_pattern_delete_is_kept(fake_backend: Backend) -> None:
    cache = fake_backend.make()
    fake_backend.disconnect()
    assert await cache.delete_pattern("user_list:*") == 0
    assert set(cache.pending.patterns) == {"user_list:*"}


# -- a real redis-server, paused and killed by PID ------------------------------


@pytest.mark.slow
async def test_a_paused_redis_costs_one_short_timeout_not_five_seconds(
    own_redis: EmbeddedRedis,
) -> None:
    cache = real_cache(own_redis, breaker=breaker(2, 30.0))
    try:
        await cache.set(USER, "old", ttl=60)
        own_redis.process.pause()
        started = time.monotonic()
        assert await cache.get(USER) is MISS
        first = time.monotonic() - started
        await cache.get(USER)
        assert state_of(cache.breaker) is BreakerState.OPEN
        started = time.monotonic()
        for _ in range(100):
            assert await cache.get(USER) is MISS
        open_calls = time.monotonic() - started
        assert first < 2.0  # the 250 ms command timeout, with room for a busy machine
        assert open_calls < 1.0  # 100 calls that never touch the network
    finally:
        own_redis.process.resume()
        await cache.aclose()


@pytest.mark.slow
async def test_paused_with_an_old_entry_then_resumed_the_old_entry_is_never_read(
    own_redis: EmbeddedRedis,
) -> None:
    """The seed loses this invalidation; we keep it until Redis answers."""
    cache = real_cache(own_redis, breaker=breaker(1, 0.05))
    try:
        await cache.get_or_load(USER, Loader({"name": "old"}), ttl=60)
        own_redis.process.pause()
        assert not await cache.delete(USER)  # the update's invalidation times out
        own_redis.process.resume()
        await asyncio.sleep(0.06)
        fresh = Loader({"name": "new"})
        assert await cache.get_or_load(USER, fresh, ttl=60) == {"name": "new"}
        assert fresh.calls == 1
    finally:
        own_redis.process.resume()
        await cache.aclose()


@pytest.mark.slow
async def test_the_cache_reconnects_by_itself_after_redis_restarts(
    own_redis: EmbeddedRedis,
) -> None:
    cache = real_cache(own_redis, breaker=breaker(1, 0.05))
    try:
        await cache.set(USER, "before", ttl=60)
        own_redis.process.kill()
        assert await cache.get(USER) is MISS
        assert state_of(cache.breaker) is BreakerState.OPEN
        own_redis.start()
        for _ in range(50):  # each try after the cool-down; a busy machine may need two
            await asyncio.sleep(0.06)
            if await cache.set(USER, "after", ttl=60):
                break
        assert await cache.get(USER) == "after"
        assert state_of(cache.breaker) is BreakerState.CLOSED
    finally:
        await cache.aclose()
