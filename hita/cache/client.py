"""``RedisCache``: the seed's cache manager over a pooled ``redis.asyncio`` client."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 1.0


class RedisCache:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @property
    def redis(self) -> Redis:
        return self._redis

    async def ping(self) -> bool:
        """The truth about Redis right now, whatever the breaker thinks."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._redis.connection_pool.aclose()
