"""``CacheAdmin``: the seed's management operations, for the API and the CLI.

Bodies follow the seed's "Management Endpoints" field for field, with real
values from Redis's INFO and from the service's own counters. When Redis
cannot be reached every operation raises ``CacheUnavailable`` (HTTP 503 with
the seed's body), at once while the circuit breaker is open.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from hita.cache.codec import MISS, new_token
from hita.cache.decorator import DECORATOR_PREFIXES
from hita.cache.inspect import KeyCounts, RedisInfo
from hita.constants import CACHE_TYPES
from hita.domain.typedefs import JsonDict
from hita.errors import CacheUnavailable
from hita.services.cache_keys import CacheKeys
from hita.services.warmup import CacheWarmupService, WarmupResult

SELF_TEST_TYPE: Final = "cache_test"
SELF_TEST_TTL_S: Final = 30


def utc_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cache_info(info: RedisInfo, *, brief: bool = False) -> JsonDict:
    if brief:  # the shape of GET /v1.0/cache/stats
        return {
            "status": "available",
            "redis_version": info.redis_version,
            "hit_rate": info.hit_rate,
        }
    return {
        "status": "available",
        "redis_version": info.redis_version,
        "used_memory": info.used_memory,
        "connected_clients": info.connected_clients,
        "hit_rate": info.hit_rate,
    }


def key_counts(counts: KeyCounts) -> JsonDict:
    body: JsonDict = {f"{name}_keys": counts.counts.get(name, 0) for name in CACHE_TYPES}
    body["total_keys"] = sum(body.values())
    body["estimated"] = not counts.complete
    return body


class CacheAdmin:
    def __init__(
        self, keys: CacheKeys, warmup: CacheWarmupService | None, scan_budget_s: float
    ) -> None:
        self._keys = keys
        self._cache = keys.cache
        self._warmup = warmup
        self._scan_budget_s = scan_budget_s

    async def _info(self, *, with_reason: bool = False) -> RedisInfo:
        info = await self._cache.server_info()
        if info is None:
            last = self._cache.errors.last
            raise CacheUnavailable(reason=last.reason if with_reason and last else None)
        return info

    async def _counts(self) -> KeyCounts:
        counts = await self._cache.count_keys(CACHE_TYPES, self._scan_budget_s)
        if counts is None:
            raise CacheUnavailable()
        return counts

    def service_statistics(self) -> JsonDict:
        """The service's own counters, per cache type (this process)."""
        stats = self._cache.stats
        return {
            "by_type": {name: c.as_dict() for name, c in sorted(stats.types.items())},
            "totals": stats.totals().as_dict(),
            "breaker_state": self._cache.breaker.state.value,
            "pending_invalidations": len(self._cache.pending),
            "last_error": last.as_dict() if (last := self._cache.errors.last) else None,
        }

    async def health(self) -> JsonDict:
        return {"cache_info": cache_info(await self._info())}

    async def detailed_health(self) -> JsonDict:
        """Admins only, so Redis's own words on why it cannot be used (NOAUTH,
        WRONGPASS, a TLS failure) are in the 503's ``reason``."""
        info = await self._info(with_reason=True)
        counts = await self._counts()
        return {
            "timestamp": utc_timestamp(),
            "cache_info": cache_info(info),
            "detailed_statistics": {
                "key_counts": key_counts(counts),
                "memory_usage": {
                    "used_memory": info.used_memory,
                    "used_memory_peak": info.used_memory_peak,
                    "memory_fragmentation_ratio": info.memory_fragmentation_ratio,
                },
                "connections": {
                    "connected_clients": info.connected_clients,
                    "total_connections_received": info.total_connections_received,
                    "uptime_in_seconds": info.uptime_in_seconds,
                },
                "performance": {
                    "keyspace_hits": info.keyspace_hits,
                    "keyspace_misses": info.keyspace_misses,
                    "hit_rate": info.hit_rate,
                    "total_commands_processed": info.total_commands_processed,
                },
                "redis_version": info.redis_version,
                "redis_mode": info.redis_mode,
                "redis_nodes": info.nodes,
                "service_statistics": self.service_statistics(),
            },
        }

    async def stats(self) -> JsonDict:
        info = await self._info()
        return {
            "cache_info": cache_info(info, brief=True),
            "key_counts": key_counts(await self._counts()),
            "service_statistics": self.service_statistics(),
            "redis_memory": {
                "used_bytes": info.used_memory_bytes,
                "max_bytes": info.maxmemory_bytes,
            },
        }

    async def clear(self, family: str | None = None) -> int:
        """Every key of the five families and of every ``@cached`` prefix (or
        of ``family`` alone, one of ``CACHE_TYPES``), by SCAN + UNLINK; never
        FLUSHDB (the Redis may be shared). Returns the count."""
        if family is not None and family not in CACHE_TYPES:
            raise ValueError(f"unknown cache family {family!r}")
        await self._info()  # 503 at once when Redis is away, rather than deferring
        deleted = 0
        families = (family,) if family else (*CACHE_TYPES, *sorted(DECORATOR_PREFIXES))
        for name in families:
            deleted += await self._cache.delete_pattern(self._keys.pattern(name), cause="admin")
        return deleted

    async def clear_user(self, user_id: str) -> None:
        """That user's cached details, and nothing else."""
        await self._info()
        if not await self._cache.delete(self._keys.user_details(user_id), cause="admin"):
            raise CacheUnavailable()

    async def warm(self) -> WarmupResult:
        if self._warmup is None:
            raise RuntimeError("this CacheAdmin was built without a database")
        await self._info()
        return await self._warmup.warm_essential_caches()

    async def self_test(self) -> JsonDict:
        """set, get, exists, delete and get-after-delete on a key of its own."""
        await self._info()
        key = self._cache.keys.key(SELF_TEST_TYPE, new_token())
        value = {"probe": new_token(), "at": time.time()}
        set_ok = await self._cache.set(key, value, SELF_TEST_TTL_S)
        get_ok = await self._cache.get(key) == value
        exists_ok = await self._cache.exists(key)
        delete_ok = await self._cache.delete(key, cause="admin")
        gone_ok = await self._cache.get(key) is MISS
        return {
            "test_results": {
                "cache_available": True,
                "set_operation": set_ok,
                "get_operation": get_ok,
                "exists_operation": exists_ok,
                "delete_operation": delete_ok,
                "get_after_delete": gone_ok,
            }
        }
