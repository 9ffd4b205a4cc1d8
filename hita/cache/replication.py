"""Deletions that a failover cannot lose: UNLINK, then WAIT for a replica.

Redis replicates asynchronously: a master that acknowledges a deletion and
dies before its replica received it takes the deletion with it, and the
promoted replica serves the old entry. So on a master that has a replica its
failover manager could promote (one the sentinels do not hold down; one
``CLUSTER SLOTS`` lists), an invalidation's UNLINKs are followed, on the same
connection, by ``WAIT 1 <CACHE_REPLICA_WAIT_MS>``; it counts as acknowledged
only if a replica confirmed it. If none did in time, ``ReplicaTimeout``: the
writer takes the durable path of the reader leases (docs/cache.md) and the
invalidation stays suspect everywhere until a later attempt is confirmed.
A master with no such replica acknowledges alone (nothing could be promoted),
but on Sentinel only the master the sentinels name, checked by its run id on
the same connection (``INFO server``): a restarted old master that a lagging
sentinel still names is a master with no replica too, and what it takes is
lost when the sentinels turn it into a replica of the promoted one.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from hita.cache.connection import BoundedRedisCluster, RedisClient

ONE: Final = 1  # replicas an invalidation must reach: the failover manager promotes the best
RELOAD_AFTER_MISS_S: Final = 1.0


class ReplicaTimeout(Exception):  # not a RedisError: the cache's boundary lets it through
    """The master took the deletion but no replica confirmed it in time: it is
    not acknowledged (and Redis is not failing: the breaker is not told)."""


class Replicas(Protocol):
    def wanted(self, slot: int | None) -> int:
        """Replicas a write to ``slot`` (None: the one master) must reach."""

    def missed(self) -> None:
        """A WAIT fell short: look at the replicas again soon (one flagged as
        failed no longer counts)."""

    def sole_master(self) -> str | None:
        """The run id a master with no replica must have to acknowledge alone
        ("" while unknown: none may); None: any may (nothing names masters)."""


class NoReplicas:
    """One server: nothing can be promoted in its place."""

    def wanted(self, slot: int | None) -> int:
        return 0

    def missed(self) -> None:
        pass

    def sole_master(self) -> str | None:
        return None


class ClusterReplicas:
    """A cluster primary's replicas as its slot map lists them (``CLUSTER
    SLOTS`` leaves out replicas flagged as failed); a WAIT that fell short
    reloads the map, at most once per ``RELOAD_AFTER_MISS_S``."""

    def __init__(self, redis: BoundedRedisCluster, clock: Callable[[], float] = time.monotonic):
        self._redis = redis
        self._clock = clock
        self._reloaded_at = -math.inf

    def wanted(self, slot: int | None) -> int:
        if slot is None:
            return 0
        holders = self._redis.nodes_manager.slots_cache.get(slot) or []
        return ONE if len(holders) > 1 else 0

    def missed(self) -> None:
        if self._clock() - self._reloaded_at >= RELOAD_AFTER_MISS_S:
            self._reloaded_at = self._clock()
            self._redis.mark_stale()

    def sole_master(self) -> str | None:
        return None  # each primary's UNLINKs go to the node its slot map names


def _name(name: bytes | str) -> bytes:
    return name.encode() if isinstance(name, str) else name


async def unlink(
    redis: RedisClient,
    names: Sequence[bytes | str],
    replicas: Replicas,
    wait_s: float,
    *,
    per_key: bool = False,
) -> int:
    """UNLINK ``names`` (one command per key if ``per_key``, else one per slot)
    and, where a replica is wanted, WAIT for it on the same connection.
    Returns the keys removed; raises ``ReplicaTimeout`` if a WAIT fell short."""
    if not names:
        return 0
    wait_ms = round(wait_s * 1000)
    if isinstance(redis, BoundedRedisCluster):
        return await _unlink_cluster(redis, names, replicas, wait_ms, per_key=per_key)
    wanted = replicas.wanted(None) if wait_ms > 0 else 0
    sole = replicas.sole_master() if wait_ms > 0 and not wanted else None
    groups = [[n] for n in names] if per_key else [list(names)]
    async with redis.pipeline(transaction=False) as pipe:
        for group in groups:
            pipe.execute_command("UNLINK", *group)
        if wanted:
            pipe.execute_command("WAIT", wanted, wait_ms)
        elif sole is not None:
            pipe.execute_command("INFO", "server")
        replies = await pipe.execute()
    if wanted:
        _check(replies.pop(), wanted, "the master")
    elif sole is not None:
        _check_sole(replies.pop(), sole)
    return sum(int(n) for n in replies)


async def _unlink_cluster(
    redis: BoundedRedisCluster,
    names: Sequence[bytes | str],
    replicas: Replicas,
    wait_ms: int,
    *,
    per_key: bool,
) -> int:
    """Each primary's UNLINKs and WAIT sent to it alone, with no redirection
    followed: a slot that moved fails the attempt (and reloads the map), so
    a WAIT always follows the writes it vouches for on their connection."""
    async with redis.permit():  # reloads a stale slot map first
        by_slot: defaultdict[int, list[bytes]] = defaultdict(list)
        for name in names:
            by_slot[key_slot(_name(name))].append(_name(name))
        nodes: dict[str, tuple[ClusterNode, list[list[bytes]], int]] = {}
        for slot, group in by_slot.items():
            node = redis.nodes_manager.get_node_from_slot(slot)
            _, groups, wanted = nodes.setdefault(node.name, (node, [], 0))
            groups.extend([[n] for n in group] if per_key else [group])
            if wait_ms > 0:
                wanted = max(wanted, replicas.wanted(slot))
            nodes[node.name] = (node, groups, wanted)
        pipe = redis.pipeline()
        waits: list[tuple[int, int, str]] = []  # (position, wanted, node)
        position = 0
        for name, (node, groups, wanted) in nodes.items():
            for group in groups:
                pipe.execute_command("UNLINK", *group, target_nodes=node)
                position += 1
            if wanted:
                pipe.execute_command("WAIT", wanted, wait_ms, target_nodes=node)
                waits.append((position, wanted, name))
                position += 1
        try:
            replies: list[Any] = await pipe.execute(allow_redirections=False)
        except (MovedError, AskError):
            redis.mark_stale()
            raise
    for at, wanted, name in waits:
        _check(replies[at], wanted, name)
    skip = {at for at, _, _ in waits}
    return sum(int(r) for i, r in enumerate(replies) if i not in skip)


def _check(reply: Any, wanted: int, where: str) -> None:
    if int(reply) < wanted:
        raise ReplicaTimeout(f"no replica of {where} confirmed the invalidation in time")


def _check_sole(info: Any, sole: str) -> None:
    run_id = info.get("run_id") if isinstance(info, dict) else None
    if not sole or run_id != sole:
        raise ReplicaTimeout(
            "a master with no replica took the invalidation, and it is not the one"
            " the sentinels name"
        )
