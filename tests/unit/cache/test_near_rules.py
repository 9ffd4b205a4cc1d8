"""When L1 may keep and serve an entry: never one read while tracking was
down, never one past its TTL or its maximum age. A cache over fakeredis with
a stand-in for tracking whose state the test sets."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from typing import Any, Final

import fakeredis
import pytest

from hita.cache import near_reads
from hita.cache.client import RedisCache
from hita.cache.codec import MISS, encode
from hita.cache.keys import KeyBuilder
from hita.cache.near import AGE, NearCache
from hita.cache.stats import READS, ReadScope
from hita.cache.view import View
from tests.conftest import make_config

KEY = KeyBuilder().key("user_details", "5779356081")


class FakeTracking:
    """Tracking as the cache sees it: up or down; nothing arrives."""

    def __init__(self) -> None:
        self.active = True

    def drain(self) -> bool:
        return self.active


def cache_with_l1() -> tuple[RedisCache, NearCache, FakeTracking]:
    config = dataclasses.replace(make_config().cache, l1_enabled=True)
    cache = RedisCache(fakeredis.FakeAsyncRedis(), config, KeyBuilder())
    near, tracking = NearCache(100, 1 << 20), FakeTracking()
    cache.attach_near(near, tracking)  # type: ignore[arg-type]
    return cache, near, tracking


async def read_across_a_reconnect(monkeypatch: pytest.MonkeyPatch) -> NearCache:
    """A read sent while tracking is down, answered once it is back."""
    cache, near, tracking = cache_with_l1()
    await cache.set(KEY, {"full_name": "Old Name"}, ttl=60)
    real = cache._read_plain
    answered = asyncio.Event()

    async def slow_read(key: Any) -> Any:
        read = await real(key)
        await answered.wait()
        return read

    monkeypatch.setattr(cache, "_read_plain", slow_read)
    tracking.active = False  # lost: an invalidation sent now reaches no subscriber
    reading = asyncio.create_task(cache.get(KEY))
    await asyncio.sleep(0)
    tracking.active = True  # reconnected before the answer arrives
    answered.set()
    assert await reading == {"full_name": "Old Name"}
    await cache.aclose()
    return near


async def test_a_read_sent_while_tracking_was_down_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    near = await read_across_a_reconnect(monkeypatch)
    assert KEY.redis_key not in near


async def test_control_a_fence_taken_while_tracking_was_down_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fence_regardless(self: RedisCache) -> int | None:
        return None if self.near is None else self.near.seq

    monkeypatch.setattr(near_reads.NearReads, "_near_fence", fence_regardless)
    near = await read_across_a_reconnect(monkeypatch)
    assert KEY.redis_key in near


async def test_an_entry_past_its_ttl_is_not_served_from_l1() -> None:
    cache, near, _ = cache_with_l1()
    near.put(KEY.redis_key, encode({"full_name": "Expired"}, ttl_ms=-1), near.seq)
    near.put("user_details:fresh", encode({"full_name": "Fresh"}, ttl_ms=60_000), near.seq)
    assert cache._near_hit(KEY) is MISS
    assert KEY.redis_key not in near
    fresh = KeyBuilder().key("user_details", "fresh")
    assert cache._near_hit(fresh) == {"full_name": "Fresh"}
    await cache.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_no_entry_is_served_past_its_max_age_whatever_its_ttl() -> None:
    clock = Clock()
    near = NearCache(100, 1 << 20, max_age_s=30.0, clock=clock)
    raw = encode({"full_name": "Long Lived"}, ttl_ms=3_600_000)  # an hour in Redis
    near.put(KEY.redis_key, raw, near.seq, cache_type="user_details")
    clock.now += 29.9
    assert near.get(KEY.redis_key) == raw
    clock.now += 0.2
    assert near.get(KEY.redis_key) is None  # read from Redis again
    assert KEY.redis_key not in near
    assert near.stats.dropped["user_details", AGE] == 1


def test_control_without_a_max_age_the_entry_stays() -> None:
    clock = Clock()
    near = NearCache(100, 1 << 20, clock=clock)
    raw = encode({"full_name": "Long Lived"}, ttl_ms=3_600_000)
    near.put(KEY.redis_key, raw, near.seq)
    clock.now += 3_000.0
    assert near.get(KEY.redis_key) == raw


# -- one drain per operation (hita.cache.stats.ReadScope) ---------------------------


class Inbox:
    """Tracking with messages waiting on its socket: a drain applies them to L1."""

    def __init__(self, cache: RedisCache) -> None:
        self.active = True
        self.waiting: list[str] = []  # keys Redis said changed, not yet read
        self.drains = 0
        self._cache = cache

    def drain(self) -> bool:
        self.drains += 1
        keys, self.waiting = self.waiting, []
        if keys:
            self._cache.tracked_keys(keys)
        return self.active


def cache_with_inbox() -> tuple[RedisCache, NearCache, Inbox]:
    config = dataclasses.replace(make_config().cache, l1_enabled=True)
    cache = RedisCache(fakeredis.FakeAsyncRedis(), config, KeyBuilder())
    near, inbox = NearCache(100, 1 << 20), Inbox(cache)
    cache.attach_near(near, inbox)  # type: ignore[arg-type]
    near.put(KEY.redis_key, encode({"full_name": "Old Name"}, ttl_ms=60_000), near.seq)
    return cache, near, inbox


def operation(scope: ReadScope | None = None) -> contextvars.Context:
    """A context as the front gives a request: a read scope of its own."""
    context = contextvars.copy_context()
    context.run(READS.set, scope or ReadScope())
    return context


NAME: Final = View("test:name", lambda user: None if user is None else user["full_name"])


async def test_an_operation_drains_once_however_many_l1_reads_it_serves() -> None:
    cache, _, inbox = cache_with_inbox()
    context = operation()
    for _ in range(3):
        assert context.run(cache.near_view, KEY, NAME) == "Old Name"
        assert context.run(cache._near_hit, KEY) == {"full_name": "Old Name"}
    assert inbox.drains == 1
    for _ in range(3):  # outside any operation: each read drains
        cache.near_view(KEY, NAME)
    assert inbox.drains == 4
    await cache.aclose()


async def test_an_invalidation_waiting_when_an_operation_begins_is_applied_first() -> None:
    cache, near, inbox = cache_with_inbox()
    assert operation().run(cache.near_view, KEY, NAME) == "Old Name"
    inbox.waiting.append(KEY.redis_key)  # a write was acknowledged meanwhile
    assert operation().run(cache.near_view, KEY, NAME) is MISS
    assert KEY.redis_key not in near
    await cache.aclose()


async def test_control_a_scope_carried_into_the_next_operation_serves_the_old_value() -> None:
    cache, _, inbox = cache_with_inbox()
    carried = ReadScope()
    assert operation(carried).run(cache.near_view, KEY, NAME) == "Old Name"
    inbox.waiting.append(KEY.redis_key)
    assert operation(carried).run(cache.near_view, KEY, NAME) == "Old Name"  # the defect
    await cache.aclose()


async def test_a_task_that_reads_after_its_operation_ended_drains_again() -> None:
    cache, _, inbox = cache_with_inbox()
    scope = ReadScope()
    context = operation(scope)
    assert context.run(cache.near_view, KEY, NAME) == "Old Name"
    scope.live = False  # the request was answered; a task it started reads on
    inbox.waiting.append(KEY.redis_key)
    assert context.run(cache.near_view, KEY, NAME) is MISS
    assert inbox.drains == 2
    await cache.aclose()
