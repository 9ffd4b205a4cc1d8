"""Early recomputation of an entry L1 serves, on a real Redis whose tracking
messages reach L1: the recomputed value's own invalidation included."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from hita.cache.client import RedisCache
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.cache.near import EARLY, NearCache
from hita.cache.tracking import tracking_for
from tests.conftest import make_config
from tests.integration.cache.conftest import cache_config
from tests.integration.conftest import until
from tests.unit.cache.test_near_xfetch import DRAW, KEY, read_a_hot_entry_past_its_ttl

pytestmark = pytest.mark.slow


async def test_a_hot_entry_in_l1_is_recomputed_before_it_expires_with_tracking_on(
    clean_redis: str,
) -> None:
    config = make_config(REDIS_URL=clean_redis)
    cache = RedisCache(
        create_redis(config.redis),
        cache_config(l1_enabled=True, ttl_jitter=0.0),
        KeyBuilder(config.redis.key_prefix),
        rng=lambda: DRAW,
    )
    prefix = f"{config.redis.key_prefix}{KEY.cache_type}:"
    tracking = tracking_for(config.redis, cache.redis, [prefix], cache.tracked_keys)
    cache.attach_near(NearCache(100, 1 << 20, max_age_s=30.0), tracking)
    running = asyncio.create_task(tracking.run_forever())
    try:
        await until(lambda: tracking.active, "tracking on")
        read = await read_a_hot_entry_past_its_ttl(cache)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert read.recomputed_ms > 250
    assert read.stats.early_refreshes >= 1
    assert read.stats.misses == 1  # no reader waited for a load
    assert read.stats.l1_hits > 10
    assert read.near.stats.dropped[KEY.cache_type, EARLY] >= 1
    assert read.near.stats.invalidations >= 1  # the recomputed value's, through tracking
