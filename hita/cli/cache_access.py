"""The cache from the command line: open it, and invalidate after changes."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hita.cache.client import RedisCache
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.config import Config
from hita.services.cache_keys import CacheKeys


@asynccontextmanager
async def open_cache(config: Config) -> AsyncIterator[CacheKeys]:
    cache = RedisCache(
        create_redis(config.redis), config.cache, KeyBuilder(config.redis.key_prefix)
    )
    try:
        yield CacheKeys(cache)
    finally:
        await cache.aclose()


async def invalidate_user_caches(config: Config, user_id: str | None = None) -> bool:
    """What a change made outside HTTP must do: drop every cached view of the
    user (or of all users). A process that exits cannot keep an invalidation
    for later, so say so when Redis is unreachable."""
    async with open_cache(config) as keys:
        applied = await keys.invalidate_user_caches(user_id, cause="cli")
    if not applied:
        print(
            "hita: warning: Redis unreachable, caches not invalidated; cached entries"
            " expire within their TTLs",
            file=sys.stderr,
        )
    return applied
