"""Every lease a reader takes is filled or given back, on every path.

Over a real redis-server the test owns: a fill Redis refuses (``maxmemory``
with ``noeviction``: OOM), a loader that times out or fails, a caller that
gives up (its timeout, a cancellation) during the load or during the fill,
and a fill that times out because Redis stopped answering. After each, no
lease is left behind, so the next reader loads at once instead of waiting
``CACHE_LEASE_WAIT_MS`` for a value nobody will write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.cache.breaker import BreakerState
from hita.cache.client import RedisCache
from hita.embedded import EmbeddedRedis
from tests.helpers import state_of
from tests.integration.cache.test_behaviour import KEYS, USER, Loader
from tests.integration.cache.test_outages import real_cache

VALUE = {"id": "5779356081", "full_name": "Ada Lovelace"}
SETTLE_S = 15.0  # bound on waiting for a background release; leases here live 60 s
PAGE = KEYS.namespaced("user_list", page=1)


@pytest.fixture
async def admin(own_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


@pytest.fixture
async def cache(own_redis: EmbeddedRedis) -> AsyncIterator[RedisCache]:
    # Leases that would outlive every test here: only a release removes them.
    made = real_cache(own_redis, lease_ttl_ms=60_000, lease_wait_ms=3_000)
    yield made
    await made.aclose()


async def stored(admin: Redis) -> bytes | None:
    raw = await admin.get(USER.redis_key)
    assert raw is None or isinstance(raw, bytes)
    return raw


async def until_no_lease(admin: Redis) -> bytes | None:
    """What the key holds once no lease is left (a bounded wait for a
    release that runs in the background)."""
    deadline = time.monotonic() + SETTLE_S
    raw = await stored(admin)
    while raw is not None and raw.startswith(b"l") and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        raw = await stored(admin)
    return raw


async def test_a_fill_refused_for_memory_gives_the_lease_back(
    cache: RedisCache, admin: Redis, own_redis: EmbeddedRedis
) -> None:
    await admin.config_set("maxmemory-policy", "noeviction")

    async def load_then_fill_redis() -> dict[str, str]:
        # The lease is taken; now Redis is full, so the fill will be refused (OOM).
        await admin.config_set("maxmemory", "1")
        return VALUE

    try:
        assert await cache.get_or_load(USER, load_then_fill_redis, ttl=60) == VALUE
        assert await stored(admin) is None  # refused, and the lease given back
        assert cache.stats["user_details"].errors >= 1
        assert cache.errors.last is not None
        assert cache.errors.last.reason.startswith("OOM command not allowed")
        # Redis answered every time: a refusal is not an outage.
        assert state_of(cache.breaker) is BreakerState.CLOSED

        # Later readers, here and in another process, load at once.
        other = real_cache(own_redis, lease_ttl_ms=60_000, lease_wait_ms=3_000)
        try:
            for reader in (cache, other):
                loader = Loader(VALUE)
                assert await reader.get_or_load(USER, loader, ttl=60) == VALUE
                assert loader.calls == 1
                assert reader.stats["user_details"].lease_waits == 0
        finally:
            await other.aclose()
    finally:
        await admin.config_set("maxmemory", "0")


async def test_a_loader_that_times_out_gives_the_lease_back(
    cache: RedisCache, admin: Redis
) -> None:
    async def timed_out() -> None:
        raise TimeoutError("the database took too long")

    with pytest.raises(TimeoutError):
        await cache.get_or_load(USER, timed_out, ttl=60)
    assert await until_no_lease(admin) is None
    loader = Loader(VALUE)
    assert await cache.get_or_load(USER, loader, ttl=60) == VALUE
    assert cache.stats["user_details"].lease_waits == 0


async def test_a_caller_timing_out_during_the_load_gives_the_lease_back(
    cache: RedisCache, admin: Redis
) -> None:
    loader = Loader(VALUE, hold=True)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await cache.get_or_load(USER, loader, ttl=60)
    assert loader.calls == 1
    assert await until_no_lease(admin) is None


async def test_a_caller_cancelled_during_the_fill_gives_the_lease_back(
    cache: RedisCache, admin: Redis, own_redis: EmbeddedRedis
) -> None:
    loaded = asyncio.Event()

    async def load_then_stall_redis() -> dict[str, str]:
        own_redis.process.pause()  # the fill that follows hangs until resumed
        loaded.set()
        return VALUE

    task = asyncio.create_task(cache.get_or_load(USER, load_then_stall_redis, ttl=60))
    await loaded.wait()
    await asyncio.sleep(0)  # the task is now inside the fill
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    own_redis.process.resume()
    assert await until_no_lease(admin) is None


async def test_a_fill_that_times_out_is_released_once_redis_answers(
    cache: RedisCache, admin: Redis, own_redis: EmbeddedRedis
) -> None:
    async def load_then_stall_redis() -> dict[str, str]:
        own_redis.process.pause()
        return VALUE

    # The fill and the release both time out (250 ms each): the value is
    # still returned, from the loader.
    assert await cache.get_or_load(USER, load_then_stall_redis, ttl=60) == VALUE
    lease = None
    own_redis.process.resume()
    lease = await stored(admin)
    assert lease is not None
    assert lease.startswith(b"l")  # still there: nothing could reach Redis
    # The lease lives 60 s, yet it is gone within seconds: released, not expired.
    assert await until_no_lease(admin) is None
    loader = Loader(VALUE)
    assert await cache.get_or_load(USER, loader, ttl=60) == VALUE
    assert cache.stats["user_details"].lease_waits == 0


# -- a read whose answer is lost after Redis ran it --------------------------------


def lose_the_reads_answer(cache: RedisCache, monkeypatch: pytest.MonkeyPatch) -> None:
    """The READ script runs and takes its lease, but its answer never comes
    back: as when the client's timeout fires while Redis is busy."""
    real = cache._read_scripted

    async def run_then_time_out(key: Any, token: str) -> Any:
        await real(key, token)
        raise RedisTimeoutError("Timeout reading from socket")

    monkeypatch.setattr(cache, "_read_scripted", run_then_time_out)


def closed_again(cache: RedisCache) -> None:
    """The timeout opened the breaker (no other request waits on that Redis);
    the release, sent whatever the breaker says, found Redis well and closed
    it, or (without the release) its background probe would."""
    if state_of(cache.breaker) is not BreakerState.CLOSED:
        cache.breaker.record_success()


@pytest.mark.parametrize("key", [USER, PAGE], ids=["plain", "namespaced"])
async def test_a_lease_taken_by_a_read_whose_answer_was_lost_is_given_back(
    cache: RedisCache, admin: Redis, monkeypatch: pytest.MonkeyPatch, key: Any
) -> None:
    lose_the_reads_answer(cache, monkeypatch)
    assert await cache.get_or_load(key, Loader(VALUE), ttl=60) == VALUE  # from the loader
    monkeypatch.undo()
    assert await leases(admin) == []  # released, though it would live 60 s
    closed_again(cache)
    started = time.monotonic()
    assert await cache.get_or_load(key, Loader(VALUE), ttl=60) == VALUE
    assert time.monotonic() - started < 0.5  # nobody waited for that lease
    assert cache.stats[key.cache_type].lease_waits == 0


async def test_control_without_the_release_the_lost_lease_makes_the_next_reader_wait(
    cache: RedisCache, admin: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_the_reads_answer(cache, monkeypatch)

    async def keep(key: Any, read: Any) -> None:
        return None

    monkeypatch.setattr(cache, "_release_later", keep)
    assert await cache.get_or_load(USER, Loader(VALUE), ttl=60) == VALUE
    monkeypatch.undo()
    assert len(await leases(admin, settle_s=0)) == 1  # nothing will give it back
    closed_again(cache)
    assert await cache.get_or_load(USER, Loader(VALUE), ttl=60) == VALUE
    assert cache.stats["user_details"].lease_waits == 1


async def stored_at(admin: Redis, key: bytes) -> bytes:
    raw = await admin.get(key)
    assert raw is None or isinstance(raw, bytes)
    return raw or b""


async def leases(admin: Redis, settle_s: float = SETTLE_S) -> list[bytes]:
    """Leases left in Redis once background releases had ``settle_s`` to run."""
    deadline = time.monotonic() + settle_s
    while True:
        found = [k async for k in admin.scan_iter() if (await stored_at(admin, k)).startswith(b"l")]
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)
