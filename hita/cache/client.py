"""``RedisCache``: the seed's cache manager, made correct under concurrency and outages.

It is assembled from one piece per concern:

| module | concern |
| --- | --- |
| ``core.py`` | the one boundary where driver errors are caught; the breaker |
| ``readthrough.py`` | ``get_or_load`` and ``refresh``, composed of the four below |
| ``reads.py`` | reading an entry from Redis (plain GETs, the READ script, read-ahead) |
| ``xfetch.py`` | early recomputation of hot entries |
| ``leases.py`` | leases, single flight, fills and giving leases back |
| ``near_reads.py`` | the L1 tier: when it serves, views, what a read leaves in it |
| ``invalidation.py`` | invalidations: past the breaker, retried, suspect until applied |
| ``pending.py`` | what this process holds suspect |

and holds here the seed's plain operations and the introspection the
management endpoints use. The cache fails open for reads (a miss, so callers
go to PostgreSQL) and never serves an entry whose invalidation it knows of
but has not seen applied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hita.cache import topology
from hita.cache.codec import MISS, VALUE, decode, encode, new_token
from hita.cache.connection import RedisClient
from hita.cache.core import FAILED, _Failed, ms
from hita.cache.inspect import KeyCounts, RedisInfo
from hita.cache.invalidation import SCAN_COUNT, Invalidator
from hita.cache.keys import AnyKey, Key, KeyBuilder, Namespace, check_name
from hita.cache.readthrough import ReadThrough
from hita.cache.stats import L1, REDIS
from hita.config import CacheConfig

__all__ = ["FAILED", "RedisCache"]

log = logging.getLogger(__name__)


class RedisCache(ReadThrough, Invalidator):
    def __init__(
        self,
        redis: RedisClient,
        config: CacheConfig,
        keys: KeyBuilder | None = None,
        **options: Any,
    ) -> None:
        super().__init__(redis, config, keys, **options)
        self._init_read_through()

    # -- the seed's operations -------------------------------------------------

    async def get(self, key: AnyKey) -> Any:
        """The cached value, or ``MISS``. Falsy values (0, [], {}, "", False, None) are hits."""
        counters = self.stats[key.cache_type]
        tier = L1
        if self.pending.covers(key):
            value = MISS
        else:
            value = self._near_hit(key)
            if value is MISS:
                tier = REDIS
                read = await self._read(key, lease=False)
                value = MISS if read is None or read.entry is None else self._value(key, read.entry)
        if value is MISS:
            counters.miss()
        else:
            counters.hit(tier)
        return value

    async def set(self, key: Key, value: Any, ttl: float) -> bool:
        """Store unconditionally. For data read from the database, prefer
        ``get_or_load``, whose lease keeps a stale read from landing after an
        invalidation."""
        ttl_ms = self._ttl_ms(ttl)
        raw = encode(value, ttl_ms=ttl_ms)
        result = await self._call(
            key.cache_type, "set", lambda: self._redis.set(key.redis_key, raw, px=ttl_ms)
        )
        if isinstance(result, _Failed):
            return False
        self.stats[key.cache_type].sets += 1
        return True

    async def delete(self, key: Key, *, cause: str = "code") -> bool:
        """Remove one entry. False means Redis could not be reached: the
        entry stays suspect (never served) and the deletion is retried."""
        return await self.invalidate(keys=[key], cause=cause)

    async def exists(self, key: Key) -> bool:
        if self.pending.covers(key):
            return False
        result = await self._call(
            key.cache_type, "exists", lambda: self._redis.getrange(key.redis_key, 0, 0)
        )
        return not isinstance(result, _Failed) and result == VALUE

    async def get_many(self, keys: Sequence[Key]) -> list[Any]:
        """Values (or ``MISS``) for many keys in one round trip; suspect keys are misses."""
        if not keys:
            return []

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key.redis_key)
                return list(await pipe.execute())

        raws = await self._call(keys[0].cache_type, "get_many", run)
        values: list[Any] = []
        for i, key in enumerate(keys):
            entry = None if isinstance(raws, _Failed) else decode(raws[i])
            suspect = self.pending.covers(key)
            value = MISS if entry is None or suspect else self._value(key, entry)
            counters = self.stats[key.cache_type]
            if value is MISS:
                counters.miss()
            else:
                counters.hit()
            values.append(value)
        return values

    async def set_many(self, items: Mapping[Key, Any], ttl: float) -> bool:
        if not items:
            return True
        ttls = {key: self._ttl_ms(ttl) for key in items}
        encoded = {key: encode(value, ttl_ms=ttls[key]) for key, value in items.items()}

        async def run() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, raw in encoded.items():
                    pipe.set(key.redis_key, raw, px=ttls[key])
                await pipe.execute()

        first = next(iter(items))
        if isinstance(await self._call(first.cache_type, "set_many", run), _Failed):
            return False
        for key in items:
            self.stats[key.cache_type].sets += 1
        return True

    async def invalidate_namespace(self, namespace: Namespace, *, cause: str = "code") -> bool:
        """Invalidate every entry of a namespace in O(1): one SET of a new
        generation, whatever the number of entries."""
        return await self.invalidate(namespaces=[namespace], cause=cause)

    # -- coordination and introspection ----------------------------------------

    async def claim_slot(self, job: str, slot_s: float) -> int | None:
        """Claim the current ``slot_s``-long time slot of a periodic job: exactly
        one caller across every instance on this Redis gets it. Returns the slot
        number, or None (another instance has it, or Redis is unreachable)."""
        base = f"{self.keys.prefix}lock:{{{check_name(job)}}}"
        result = await self._call(
            "lock",
            "claim_slot",
            lambda: self._claim_slot_script(keys=[base], args=[ms(slot_s), new_token()]),
        )
        if isinstance(result, _Failed) or int(result) < 0:
            return None
        return int(result)

    async def server_info(self) -> RedisInfo | None:
        """INFO, parsed; None when Redis cannot be reached (or the breaker is open)."""
        result = await self._call("info", "info", lambda: topology.info(self._redis))
        return None if isinstance(result, _Failed) else RedisInfo.parse(result)

    async def servers(self) -> list[dict[str, str]] | None:
        """The servers behind the client (``topology.describe``); None when
        Redis cannot be reached (or the breaker is open)."""
        result = await self._call("info", "topology", lambda: topology.describe(self._redis))
        return None if isinstance(result, _Failed) else result

    async def count_keys(self, families: Iterable[str], budget_s: float) -> KeyCounts | None:
        """Keys per family (``user_details``...), by one SCAN pass over this
        service's prefix (never KEYS). Past ``budget_s`` the counts are estimates."""
        wanted = {check_name(f) for f in families}
        prefix = self.keys.prefix

        async def scan() -> KeyCounts:
            counts = KeyCounts(dict.fromkeys(sorted(wanted), 0))
            deadline = self._clock() + budget_s
            async for name in topology.scan_keys(self._redis, f"{prefix}*", SCAN_COUNT):
                counts.scanned += 1
                family = name.decode(errors="replace").removeprefix(prefix).partition(":")[0]
                if family in wanted:
                    counts.add(family)
                if counts.scanned % SCAN_COUNT == 0 and self._clock() > deadline:
                    counts.extrapolate(await topology.dbsize(self._redis))
                    break
            return counts

        result = await self._call("info", "count_keys", scan)
        return None if isinstance(result, _Failed) else result
