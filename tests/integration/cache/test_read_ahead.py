"""Reading ahead: a request's token check and data read in one round trip.

``read_ahead`` MGETs several entries for the task's next reads of them. Each
answer is used once, by the task that read it, and is judged like a read sent
at the time of the MGET, so an invalidation this process knows of still wins.
Commands are counted with INFO commandstats (before/after, never RESETSTAT)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hita.cache.client import RedisCache
from hita.cache.keys import KeyBuilder
from hita.cache.pending import Invalidation
from tests.conftest import RedisTarget
from tests.integration.cache.conftest import Backend, real_backend_factory
from tests.integration.cache.test_scale import calls_since, command_calls

KEYS = KeyBuilder()

A = KEYS.key("user_details", "1000000001")
B = KEYS.key("user_details", "1000000002")


class Loader:
    def __init__(self, value: object) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        return self.value


@pytest.fixture
async def real(clean_redis: str) -> AsyncIterator[Backend]:
    backend = await real_backend_factory(RedisTarget("standalone", {"REDIS_URL": clean_redis}))
    yield backend
    await backend.close()


async def filled(real: Backend) -> RedisCache:
    cache = real.make()
    await cache.set(A, {"name": "a"}, ttl=60)
    await cache.set(B, {"name": "b"}, ttl=60)
    await cache.get(A)  # the read pipe's connection is open (its handshake is no read)
    return cache


async def test_two_reads_read_ahead_cost_one_mget(real: Backend) -> None:
    cache = await filled(real)
    before = await command_calls(real.redis)

    async def request() -> list[object]:
        await cache.read_ahead([A, B])
        return [
            await cache.get_or_load(A, Loader("db"), ttl=60),
            await cache.get_or_load(B, Loader("db"), ttl=60),
        ]

    assert await asyncio.create_task(request()) == [{"name": "a"}, {"name": "b"}]
    assert await calls_since(real.redis, before) == {"mget": 1}


async def test_an_answer_read_ahead_is_used_once(real: Backend) -> None:
    cache = await filled(real)
    before = await command_calls(real.redis)

    async def request() -> None:
        await cache.read_ahead([A, B])
        await cache.get_or_load(A, Loader("db"), ttl=60)
        await real.redis.set(A.redis_key, b"gone")  # a second read must ask Redis again
        assert await cache.get_or_load(A, Loader("db"), ttl=60) == "db"

    await asyncio.create_task(request())
    calls = await calls_since(real.redis, before)
    assert calls["mget"] == 1
    assert calls["evalsha"] >= 1  # the second read of A asked Redis for itself


async def test_another_task_does_not_use_what_a_task_read_ahead(real: Backend) -> None:
    cache = await filled(real)

    async def request() -> None:
        await cache.read_ahead([A, B])
        await real.redis.set(A.redis_key, b"gone")
        # A task started from this one inherits the context, but not the answers.
        other = asyncio.create_task(cache.get_or_load(A, Loader("db"), ttl=60))
        assert await other == "db"
        assert await cache.get_or_load(A, Loader("db"), ttl=60) == {"name": "a"}

    await asyncio.create_task(request())


async def test_an_invalidation_heard_after_the_read_ahead_wins(real: Backend) -> None:
    cache = await filled(real)

    async def request() -> None:
        await cache.read_ahead([A, B])
        # Another instance's write: suspect at once (the notification), applied soon.
        cache.invalidate_later(Invalidation(keys=(A,)), cause="test")
        assert await cache.get_or_load(A, Loader({"name": "new"}), ttl=60) == {"name": "new"}
        assert await cache.get_or_load(B, Loader("db"), ttl=60) == {"name": "b"}

    await asyncio.create_task(request())


async def test_suspect_keys_and_a_single_key_are_not_read_ahead(real: Backend) -> None:
    cache = await filled(real)
    before = await command_calls(real.redis)

    async def request() -> None:
        cache.invalidate_later(Invalidation(keys=(A,)), cause="test")
        await cache.read_ahead([A, B])  # only B is left: no gain

    await asyncio.create_task(request())
    calls = await calls_since(real.redis, before)
    assert "mget" not in calls


async def test_a_key_listed_twice_serves_two_reads(real: Backend) -> None:
    cache = await filled(real)
    before = await command_calls(real.redis)

    async def request() -> None:
        await cache.read_ahead([A, A])  # the caller reading its own details
        assert await cache.get_or_load(A, Loader("db"), ttl=60) == {"name": "a"}
        assert await cache.get_or_load(A, Loader("db"), ttl=60) == {"name": "a"}
        assert await calls_since(real.redis, before) == {"mget": 1}
        await cache.get_or_load(A, Loader("db"), ttl=60)  # a third read asks for itself

    await asyncio.create_task(request())
    assert (await calls_since(real.redis, before)).get("get") == 1
