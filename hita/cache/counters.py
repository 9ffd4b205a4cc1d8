"""Fixed-window counters in Redis, for rate limits.

A counter is created with the window as its TTL and counts up until the key
expires, so every instance on the same Redis sees the same count. Errors of
the driver are translated here, once, into ``CacheUnavailable``; the caller
decides what to do without Redis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from redis.exceptions import RedisError

from hita.cache.connection import RedisClient
from hita.errors import CacheUnavailable

_ERRORS = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Count:
    value: int
    expires_in_s: float  # 0 when the counter does not exist

    @property
    def retry_after_s(self) -> int:
        """Whole seconds until the window closes, at least 1."""
        return max(1, math.ceil(self.expires_in_s))


# One key, so one slot on a cluster: open the window (or keep a running one),
# count, and say how long the window has left, atomically.
_ADD: Final = """
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
local value = redis.call('INCR', KEYS[1])
return {value, redis.call('PTTL', KEYS[1])}
"""


class WindowCounters:
    """``add`` counts one event in a key's current window; ``read`` and ``clear``."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._add = redis.register_script(_ADD)

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    async def add(self, name: str, window_s: int) -> Count:
        key = self._key(name)
        try:
            value, pttl = await self._add(keys=[key], args=[window_s])
        except _ERRORS as exc:
            raise CacheUnavailable() from exc
        return Count(int(value), max(int(pttl), 0) / 1000)

    async def read(self, names: Sequence[str]) -> list[Count]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(self._key(name))
                    pipe.pttl(self._key(name))
                replies = await pipe.execute()
        except _ERRORS as exc:
            raise CacheUnavailable() from exc
        counts = []
        for value, pttl in zip(replies[::2], replies[1::2], strict=True):
            counts.append(Count(int(value or 0), max(int(pttl), 0) / 1000))
        return counts

    async def clear(self, name: str) -> None:
        try:
            await self._redis.delete(self._key(name))
        except _ERRORS as exc:
            raise CacheUnavailable() from exc
