"""What differs between one Redis server and a Redis Cluster, in one place.

Keys are spread over the cluster's primaries by hash slot, so anything that
walks the keyspace or asks the server about itself must visit every primary:
SCAN per node (never KEYS), UNLINK in batches of keys that share a slot (a
multi-key command may not cross slots), INFO and DBSIZE per node, summed. A
Sentinel-managed master is one server, like standalone. Every function takes
either client and raises the driver's errors (the cache's ``_call`` turns them
into outages).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import key_slot
from redis.exceptions import ClusterError, ReadOnlyError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.cache.connection import BoundedRedisCluster, RedisClient

# Errors that mean "Redis (or part of the cluster) is not reachable right now":
# they count against the breaker. ClusterDownError and MasterDownError (a slot
# whose primary failed, before its replica is promoted) are ClusterErrors;
# SlotNotCoveredError is the client's own word for the same state.
OUTAGE_ERRORS: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
    OSError,
    TimeoutError,
)

# Counters summed over the nodes of a cluster; other fields come from the first node.
_SUMMED: Final = (
    "used_memory",
    "used_memory_peak",
    "maxmemory",
    "connected_clients",
    "total_connections_received",
    "total_commands_processed",
    "keyspace_hits",
    "keyspace_misses",
)


def is_cluster(redis: RedisClient) -> bool:
    return isinstance(redis, RedisCluster)


async def primaries(redis: RedisClient) -> list[ClusterNode] | None:
    """The cluster's primaries as the client now sees them; None for one server."""
    if not isinstance(redis, RedisCluster):
        return None
    await redis.initialize()
    return redis.get_primaries()


async def nodes(redis: RedisClient) -> list[ClusterNode] | None:
    """Every node of the cluster, replicas included; None for one server."""
    if not isinstance(redis, RedisCluster):
        return None
    await redis.initialize()
    return redis.get_nodes()


async def scan_keys(redis: RedisClient, match: str, count: int) -> AsyncIterator[bytes]:
    """Every key matching ``match``: SCAN on the server, or on each primary in turn."""
    if not isinstance(redis, RedisCluster):
        async for name in redis.scan_iter(match=match, count=count):
            yield name
        return
    for node in await primaries(redis) or []:
        cursor = 0
        while True:
            cursors, names = await redis.execute_command(
                "SCAN", cursor, "MATCH", match, "COUNT", count, target_nodes=node
            )
            cursor = int(cursors[node.name])
            for name in names:
                yield name
            if cursor == 0:
                break


def by_slot(names: Iterable[bytes]) -> list[list[bytes]]:
    """Keys grouped by hash slot, so each group is a valid multi-key command."""
    groups: defaultdict[int, list[bytes]] = defaultdict(list)
    for name in names:
        groups[key_slot(name)].append(name)
    return list(groups.values())


async def unlink(redis: RedisClient, names: Sequence[bytes]) -> int:
    """UNLINK ``names``: one command on one server; on a cluster one UNLINK per
    slot, all sent in one pipeline (one round trip per primary)."""
    if not names:
        return 0
    if not isinstance(redis, RedisCluster):
        return int(await redis.unlink(*names))
    async with redis.pipeline(transaction=False) as pipe:
        for group in by_slot(names):
            pipe.execute_command("UNLINK", *group)
        return sum(int(n) for n in await pipe.execute())


async def unlink_matching(redis: RedisClient, match: str, scan_count: int, batch: int) -> int:
    """Remove every key matching ``match`` with SCAN and batched UNLINK (never KEYS)."""
    removed = 0
    pending: list[bytes] = []
    async for name in scan_keys(redis, match, scan_count):
        pending.append(name)
        if len(pending) >= batch:
            removed += await unlink(redis, pending)
            pending = []
    return removed + await unlink(redis, pending)


async def info_per_node(
    redis: RedisClient, section: str | None = None, *, replicas: bool = False
) -> dict[str, dict[str, Any]]:
    """INFO of the server, or of every primary (and replica if asked), by node name."""
    if not isinstance(redis, RedisCluster):
        return {"server": await redis.info(section)}
    targets = await (nodes(redis) if replicas else primaries(redis)) or []
    result: dict[str, dict[str, Any]] = {}
    for node in targets:
        args = ("INFO",) if section is None else ("INFO", section)
        result[node.name] = await redis.execute_command(*args, target_nodes=node)
    return result


def aggregate_info(per_node: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One INFO-like mapping for the whole keyspace: counters summed over the
    primaries, the rest from the first node, plus ``hita_nodes``."""
    infos = list(per_node.values())
    merged: dict[str, Any] = dict(infos[0]) if infos else {}
    for name in _SUMMED:
        merged[name] = sum(int(info.get(name, 0)) for info in infos)
    for name in ("used_memory", "used_memory_peak"):
        merged[f"{name}_human"] = human_bytes(merged[name])
    merged["uptime_in_seconds"] = min(
        (int(i.get("uptime_in_seconds", 0)) for i in infos), default=0
    )
    merged["hita_nodes"] = len(infos)
    return merged


async def info(redis: RedisClient) -> dict[str, Any]:
    """INFO of the server, or of every primary aggregated."""
    per_node = await info_per_node(redis)
    if not isinstance(redis, RedisCluster):
        return {**per_node["server"], "hita_nodes": 1}
    return aggregate_info(per_node)


async def dbsize(redis: RedisClient) -> int:
    """Keys in the database: DBSIZE, summed over the primaries on a cluster."""
    if not isinstance(redis, RedisCluster):
        return int(await redis.dbsize())
    total = 0
    for node in await primaries(redis) or []:
        reply = await redis.execute_command("DBSIZE", target_nodes=node)
        total += int(reply)
    return total


async def ping(redis: RedisClient) -> bool:
    """PING the server, or every primary: a cluster with a slot whose primary
    is down cannot serve every key, so it is not healthy."""
    if not isinstance(redis, RedisCluster):
        return bool(await redis.ping())
    targets = await primaries(redis) or []
    for node in targets:
        if not await redis.execute_command("PING", target_nodes=node):
            return False
    return bool(targets)


async def describe(redis: RedisClient) -> list[dict[str, str]]:
    """The servers behind the client: ``[{address, role}]``, roles ``primary``
    and ``replica`` (a cluster's nodes as the client sees them), ``master``
    (the one Sentinel names now) or ``server``. Addresses carry no password."""
    if isinstance(redis, RedisCluster):
        return [
            {"address": node.name, "role": str(node.server_type or "unknown")}
            for node in await nodes(redis) or []
        ]
    pool = redis.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
        return [{"address": f"{host}:{port}", "role": "master"}]
    kwargs = pool.connection_kwargs
    address = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return [{"address": str(address), "role": "server"}]


async def close(redis: RedisClient) -> None:
    """Close the client, its pools, and the sentinel connections behind it."""
    if isinstance(redis, BoundedRedisCluster):
        await redis.close_all()
        return
    await redis.aclose()
    if isinstance(redis, Redis):
        pool = redis.connection_pool
        await pool.aclose()
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def human_bytes(size: int) -> str:
    """Redis's own ``used_memory_human`` format: ``1.50M``."""
    value = float(size)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")
