"""The cache's behaviour, the same on fakeredis and on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hita.cache.codec import MISS, encode_lease
from hita.cache.keys import KeyBuilder
from tests.integration.cache.conftest import Backend

KEYS = KeyBuilder()
USER = KEYS.key("user_details", "5779356081")


class Loader:
    """A loader that counts its calls and can be held until released."""

    def __init__(self, value: Any = None, *, hold: bool = False) -> None:
        self.value = value
        self.calls = 0
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return self.value


async def test_get_of_an_absent_key_is_a_miss(backend: Backend) -> None:
    cache = backend.make()
    assert await cache.get(USER) is MISS
    assert cache.stats["user_details"].misses == 1


@pytest.mark.parametrize("value", [0, [], {}, "", False, None, {"id": "5779356081"}])
async def test_falsy_values_are_hits(backend: Backend, value: object) -> None:
    cache = backend.make()
    assert await cache.set(USER, value, ttl=60)
    assert await cache.get(USER) == value
    assert await cache.get(USER) is not MISS
    assert cache.stats["user_details"].hits == 2
    assert cache.stats["user_details"].sets == 1


async def test_set_applies_the_ttl(backend: Backend) -> None:
    cache = backend.make(ttl_jitter=0.0)
    await cache.set(USER, {"a": 1}, ttl=180)
    pttl = await backend.redis.pttl(USER.redis_key)
    assert 179_000 < pttl <= 180_000


async def ttls_of_keys_filled_together(backend: Backend, jitter: float) -> list[int]:
    """100 keys stored by one ``set_many`` (a warm-up) and 100 filled by reads
    through the cache (a burst of misses), all with a TTL of 180 s: their PTTLs."""
    cache = backend.make(ttl_jitter=jitter)
    stored = [KEYS.key("user_details", f"{n:010d}") for n in range(100)]
    assert await cache.set_many({key: {"a": 1} for key in stored}, ttl=180)
    loaded = [KEYS.key("user_details", f"{n:010d}") for n in range(100, 200)]
    for key in loaded:
        assert await cache.get_or_load(key, Loader({"b": 2}), ttl=180) == {"b": 2}
    return [await backend.redis.pttl(key.redis_key) for key in stored + loaded]


async def test_keys_filled_together_do_not_expire_together(backend: Backend) -> None:
    ttls = await ttls_of_keys_filled_together(backend, jitter=0.1)
    assert all(162_000 - 5_000 < ttl <= 180_000 for ttl in ttls)  # never past the TTL
    assert max(ttls) - min(ttls) > 9_000  # spread over at least half of the 18 s allowed


async def test_control_without_jitter_keys_filled_together_expire_together(
    backend: Backend,
) -> None:
    ttls = await ttls_of_keys_filled_together(backend, jitter=0.0)
    assert max(ttls) - min(ttls) < 5_000  # a warm-up's keys all reload within seconds


async def test_delete_and_exists(backend: Backend) -> None:
    cache = backend.make()
    assert not await cache.exists(USER)
    await cache.set(USER, 0, ttl=60)
    assert await cache.exists(USER)
    assert await cache.delete(USER)
    assert not await cache.exists(USER)
    assert await cache.get(USER) is MISS
    assert cache.stats["user_details"].invalidations == 1


async def test_a_lease_is_not_an_entry(backend: Backend) -> None:
    cache = backend.make()
    await backend.redis.set(USER.redis_key, encode_lease("0123456789abcdef"))
    assert not await cache.exists(USER)
    assert await cache.get(USER) is MISS


async def test_delete_pattern_removes_only_its_family(backend: Backend) -> None:
    cache = backend.make()
    for i in range(2500):
        await backend.redis.set(f"user_details:{i:010d}", b"x")
    await backend.redis.set("user_stats:x", b"x")
    await backend.redis.set("other_app:user_details:1", b"x")
    assert await cache.delete_pattern("user_details:*") == 2500
    assert await backend.redis.exists("user_stats:x", "other_app:user_details:1") == 2


@pytest.mark.parametrize("pattern", ["*", "*:1", "", "user_details", "[u]ser:*"])
async def test_delete_pattern_refuses_patterns_that_are_not_one_family(
    backend: Backend, pattern: str
) -> None:
    with pytest.raises(ValueError, match="refusing pattern"):
        await backend.make().delete_pattern(pattern)


async def test_get_many_and_set_many_in_one_round_trip(backend: Backend) -> None:
    cache = backend.make()
    keys = [KEYS.key("user_details", f"{i:010d}") for i in range(3)]
    assert await cache.set_many({keys[0]: {"n": 0}, keys[2]: []}, ttl=60)
    assert await cache.get_many(keys) == [{"n": 0}, MISS, []]
    assert await cache.get_many([]) == []


async def test_get_or_load_loads_once_then_hits(backend: Backend) -> None:
    cache = backend.make()
    loader = Loader({"id": "5779356081"})
    for _ in range(3):
        assert await cache.get_or_load(USER, loader, ttl=60) == {"id": "5779356081"}
    assert loader.calls == 1
    counters = cache.stats["user_details"]
    assert (counters.hits, counters.misses, counters.sets) == (2, 1, 1)


async def test_negative_caching_keeps_not_found_briefly(backend: Backend) -> None:
    cache = backend.make()
    loader = Loader(None)
    assert await cache.get_or_load(USER, loader, ttl=60, negative_ttl=5) is None
    assert await cache.get_or_load(USER, loader, ttl=60, negative_ttl=5) is None
    assert loader.calls == 1
    assert 0 < await backend.redis.pttl(USER.redis_key) <= 5000


async def test_none_is_not_cached_without_a_negative_ttl(backend: Backend) -> None:
    cache = backend.make()
    loader = Loader(None)
    await cache.get_or_load(USER, loader, ttl=60)
    await cache.get_or_load(USER, loader, ttl=60)
    assert loader.calls == 2
    assert await backend.redis.exists(USER.redis_key) == 0


async def test_concurrent_misses_in_one_process_share_one_load(backend: Backend) -> None:
    cache = backend.make()
    loader = Loader({"v": 1}, hold=True)
    # Fewer readers than pool connections: a reader that waits too long for a
    # connection reads PostgreSQL on its own (fail-open), on a busy machine too.
    n = 50 if backend.name == "fake" else 30  # below REDIS_MAX_CONNECTIONS (32)
    readers = [asyncio.create_task(cache.get_or_load(USER, loader, ttl=60)) for _ in range(n)]
    await loader.started.wait()
    loader.release.set()
    assert await asyncio.gather(*readers) == [{"v": 1}] * n
    assert loader.calls == 1


async def test_concurrent_misses_across_processes_share_one_load(backend: Backend) -> None:
    first, second = backend.make(), backend.make()  # two instances, one Redis
    loader = Loader({"v": 2}, hold=True)
    a = asyncio.create_task(first.get_or_load(USER, loader, ttl=60))
    await loader.started.wait()
    b = asyncio.create_task(second.get_or_load(USER, loader, ttl=60))
    for _ in range(500):  # until the second instance waits on the lease (a cold
        if second.stats["user_details"].lease_waits:  # cluster client first loads its map)
            break
        await asyncio.sleep(0.01)
    loader.release.set()
    assert list(await asyncio.gather(a, b)) == [{"v": 2}, {"v": 2}]
    assert loader.calls == 1
    assert second.stats["user_details"].lease_waits == 1


async def test_a_reader_does_not_wait_past_the_lease_wait(backend: Backend) -> None:
    first, second = backend.make(), backend.make(lease_wait_ms=50)
    slow = Loader("old", hold=True)
    a = asyncio.create_task(first.get_or_load(USER, slow, ttl=60))
    await slow.started.wait()
    assert await second.get_or_load(USER, Loader("own"), ttl=60) == "own"
    slow.release.set()
    await a


async def test_a_stale_read_cannot_land_after_an_invalidation(backend: Backend) -> None:
    """Reader misses, reads the old row, the write invalidates, the reader stores."""
    cache = backend.make()
    old_row = Loader({"name": "old"}, hold=True)
    reader = asyncio.create_task(cache.get_or_load(USER, old_row, ttl=60))
    await old_row.started.wait()
    assert await cache.delete(USER)  # the writer's invalidation
    old_row.release.set()
    assert await reader == {"name": "old"}  # that reader began before the write
    assert await cache.get_or_load(USER, Loader({"name": "new"}), ttl=60) == {"name": "new"}


async def test_namespace_invalidation_makes_every_entry_unreachable(backend: Backend) -> None:
    cache = backend.make()
    pages = [KEYS.namespaced("user_list", page=p) for p in range(1, 4)]
    for page in pages:
        await cache.get_or_load(page, Loader(["old"]), ttl=60)
    assert await cache.invalidate_namespace(KEYS.namespace("user_list"))
    fresh = Loader(["new"])
    for page in pages:
        assert await cache.get_or_load(page, fresh, ttl=60) == ["new"]
    assert fresh.calls == 3
    other = KEYS.namespaced("user_stats")
    await cache.get_or_load(other, Loader({"total": 1}), ttl=60)
    await cache.invalidate_namespace(KEYS.namespace("user_list"))
    assert await cache.get(other) == {"total": 1}


async def test_a_namespaced_stale_read_lands_in_a_dead_generation(backend: Backend) -> None:
    cache = backend.make()
    page = KEYS.namespaced("user_list", page=1)
    old = Loader(["old"], hold=True)
    reader = asyncio.create_task(cache.get_or_load(page, old, ttl=60))
    await old.started.wait()
    await cache.invalidate_namespace(page.namespace)
    old.release.set()
    await reader
    assert await cache.get(page) is MISS


async def test_a_deleted_generation_key_starts_a_fresh_namespace(backend: Backend) -> None:
    cache = backend.make()
    page = KEYS.namespaced("user_list", page=1)
    await cache.get_or_load(page, Loader(["old"]), ttl=60)
    await backend.redis.delete(page.namespace.generation_key)  # evicted, or deleted by hand
    assert await cache.get_or_load(page, Loader(["new"]), ttl=60) == ["new"]


async def test_refresh_stores_under_the_generation_it_saw(backend: Backend) -> None:
    cache = backend.make()
    stats = KEYS.namespaced("dashboard_stats")
    assert await cache.refresh(stats, Loader({"v": 1}), ttl=60) == {"v": 1}
    assert await cache.get(stats) == {"v": 1}
    slow = Loader({"v": 2}, hold=True)
    refresher = asyncio.create_task(cache.refresh(stats, slow, ttl=60))
    await slow.started.wait()
    await cache.invalidate_namespace(stats.namespace)
    slow.release.set()
    await refresher
    assert await cache.get(stats) is MISS


async def test_xfetch_recomputes_a_hot_entry_before_it_expires(backend: Backend) -> None:
    # rng close to 1 makes -delta*beta*log(1-rng) large: recompute now.
    cache = backend.make()
    cache._rng = lambda: 0.999999  # the test controls chance
    stats = KEYS.namespaced("dashboard_stats")

    async def slow_first() -> dict[str, int]:
        await asyncio.sleep(0.1)
        return {"v": 1}

    # 100 ms to compute, 1 s to live: -100 * log(1e-6) = 1.38 s >= what is left. (A
    # busy machine has a whole second, not 250 ms, before the entry would expire.)
    assert await cache.get_or_load(stats, slow_first, ttl=1.0) == {"v": 1}
    newer = Loader({"v": 2})
    assert await cache.get_or_load(stats, newer, ttl=1.0) == {"v": 1}  # served at once
    for _ in range(100):
        if cache.stats["dashboard_stats"].early_refreshes:
            break
        await asyncio.sleep(0.01)
    assert newer.calls == 1
    assert await cache.get(stats) == {"v": 2}


async def test_an_unlucky_draw_does_not_recompute(backend: Backend) -> None:
    cache = backend.make()
    cache._rng = lambda: 0.0
    stats = KEYS.namespaced("dashboard_stats")
    await cache.get_or_load(stats, Loader({"v": 1}), ttl=60)
    newer = Loader({"v": 2})
    await cache.get_or_load(stats, newer, ttl=60)
    await asyncio.sleep(0.02)
    assert newer.calls == 0


async def test_a_failing_loader_releases_its_lease(backend: Backend) -> None:
    cache = backend.make()

    async def broken() -> None:
        raise RuntimeError("database said no")

    with pytest.raises(RuntimeError):
        await cache.get_or_load(USER, broken, ttl=60)
    for _ in range(50):
        if not await backend.redis.exists(USER.redis_key):
            break
        await asyncio.sleep(0.01)
    assert await backend.redis.exists(USER.redis_key) == 0
    assert await cache.get_or_load(USER, Loader("ok"), ttl=60) == "ok"


async def test_a_time_slot_is_claimed_once_across_instances(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    claims = [
        await first.claim_slot("stats_refresh", 60),
        await second.claim_slot("stats_refresh", 60),
    ]
    claimed = [c for c in claims if c is not None]
    assert len(claimed) == 1
    assert await first.claim_slot("stats_refresh", 60) is None
    assert await first.claim_slot("other_job", 60) is not None
