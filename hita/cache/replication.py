"""Deletions that a failover cannot lose: UNLINK, then WAIT for a replica.

Redis replicates asynchronously: a master that acknowledges a deletion and
dies before its replica received it takes the deletion with it, and the
promoted replica serves the old entry. So on a master that has a replica its
failover manager could ever promote, an invalidation's UNLINKs are followed,
on the same connection, by ``WAIT 1 <CACHE_REPLICA_WAIT_MS>``; it counts as
acknowledged only if a replica confirmed it. If none did in time,
``ReplicaTimeout``: the writer takes the durable path of the reader leases
(docs/cache.md) and the invalidation stays suspect everywhere until a later
attempt is confirmed. A replica the failover manager holds down (flagged
``fail`` in the Cluster, ``s_down`` by the sentinels) is still waited for:
one that was frozen comes back with its memory and no word of what it
missed, its replication link counted as lost only from when it noticed, and
can be promoted so. Only a replica gone from the manager's table (``CLUSTER
FORGET``, ``SENTINEL RESET``) or one it never promotes (Sentinel's
``replica-priority 0``) is not. A master with no other replica acknowledges
alone (nothing could be promoted), but on Sentinel only the master the
sentinels name, checked by its run id on the same connection (``INFO
server``): a restarted old master that a lagging sentinel still names is a
master with no replica too, and what it takes is lost when the sentinels turn
it into a replica of the promoted one; on a Cluster only a primary whose own
``CLUSTER NODES``, on the same connection, names no replica of it (one may
have joined since the client's view was read).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisError

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
    """A cluster primary's replicas: those its slot map lists and those
    ``CLUSTER NODES`` names, read again after each reload of the map (the slot
    map leaves out a replica flagged ``fail``, which may still come back and
    be promoted). A WAIT that fell short reloads the map, at most once per
    ``RELOAD_AFTER_MISS_S``; until ``CLUSTER NODES`` has been read, every
    primary is taken to have a replica (the safe side)."""

    def __init__(self, redis: BoundedRedisCluster, clock: Callable[[], float] = time.monotonic):
        self._redis = redis
        self._clock = clock
        self._reloaded_at = -math.inf
        self._known: dict[str, int] | None = None  # replicas by primary address; None: unknown
        self._read_at = -1  # the map reload ``_known`` was read after
        self._reading = asyncio.Lock()

    def wanted(self, slot: int | None) -> int:
        if slot is None:
            return 0
        holders = self._redis.nodes_manager.slots_cache.get(slot) or []
        if len(holders) != 1 or self._known is None:
            return ONE
        return ONE if self._known.get(holders[0].name, ONE) else 0

    def missed(self) -> None:
        if self._clock() - self._reloaded_at >= RELOAD_AFTER_MISS_S:
            self._reloaded_at = self._clock()
            self._redis.mark_stale()

    def sole_master(self) -> str | None:
        return None  # each primary's UNLINKs go to the node its slot map names

    async def follow_reloads(self) -> None:
        """Read ``CLUSTER NODES`` again if the slot map was reloaded since (one
        round trip after a reload; none otherwise). Unreadable: unknown."""
        async with self._reading:
            if self._read_at == self._redis.reloads:
                return
            self._read_at = self._redis.reloads
            self._known = None
            for node in self._redis.get_primaries():
                try:
                    reply = await node.execute_command("CLUSTER", "NODES")
                except (RedisError, OSError):
                    continue
                self._known = replicas_by_primary(reply)
                return


def _rows(reply: Any) -> list[tuple[str, tuple[str, ...], set[str], str]]:
    """(node id, its addresses, flags, master id) of each node of a ``CLUSTER
    NODES`` reply (its text, or the dict redis-py may have parsed it into); the
    addresses are ``ip:port`` and, if it announces one, ``hostname:port``."""
    if isinstance(reply, dict):
        return [
            (
                str(n["node_id"]),
                _addresses(str(a), str(n.get("hostname") or "")),
                set(str(n["flags"]).split(",")),
                str(n["master_id"]),
            )
            for a, n in reply.items()
        ]
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8:
            node_id, address, flags, master_id = fields[:4]
            ip_port, _, bus = address.partition("@")
            hostname = bus.split(",", 1)[1] if "," in bus else ""
            rows.append((node_id, _addresses(ip_port, hostname), set(flags.split(",")), master_id))
    return rows


def _addresses(ip_port: str, hostname: str) -> tuple[str, ...]:
    if not hostname:
        return (ip_port,)
    return ip_port, f"{hostname}:{ip_port.rsplit(':', 1)[-1]}"


def replicas_by_primary(cluster_nodes: Any) -> dict[str, int]:
    """Each master's addresses in a ``CLUSTER NODES`` reply, and how many
    replicas name it as theirs, whatever their flags (``fail`` included)."""
    rows = _rows(cluster_nodes)
    replicas = Counter(m for _, _, flags, m in rows if "master" not in flags and m != "-")
    return {
        address: replicas[node_id]
        for node_id, addresses, flags, _ in rows
        if "master" in flags
        for address in addresses
    }


def replicas_of_myself(cluster_nodes: Any) -> int:
    """How many replicas, whatever their flags, name the node that answered
    ``CLUSTER NODES`` (``myself``) as their master; ONE if it names no self."""
    rows = _rows(cluster_nodes)
    me = next((node_id for node_id, _, flags, _ in rows if "myself" in flags), None)
    if me is None:
        return ONE
    return sum(1 for _, _, flags, m in rows if "master" not in flags and m == me)


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
    a WAIT always follows the writes it vouches for on their connection.
    A primary the client's view shows with no replica acknowledges alone only
    if its own ``CLUSTER NODES``, on the same connection, names none either: a
    replica that joined since the view was read (one restarted after a
    failover) is then waited for from the next attempt on."""
    asks_alone = isinstance(replicas, ClusterReplicas) and wait_ms > 0
    async with redis.permit():  # reloads a stale slot map first
        if isinstance(replicas, ClusterReplicas):
            await replicas.follow_reloads()
        pipe = redis.pipeline()
        waits: list[tuple[int, int, str]] = []  # (position, wanted, node)
        alone: list[tuple[int, str]] = []  # (position, node): acknowledging alone
        position = 0
        for name, (node, groups, wanted) in _by_node(redis, names, replicas, wait_ms, per_key):
            for group in groups:
                pipe.execute_command("UNLINK", *group, target_nodes=node)
                position += 1
            if wanted:
                pipe.execute_command("WAIT", wanted, wait_ms, target_nodes=node)
                waits.append((position, wanted, name))
                position += 1
            elif asks_alone:
                pipe.execute_command("CLUSTER", "NODES", target_nodes=node)
                alone.append((position, name))
                position += 1
        try:
            replies: list[Any] = await pipe.execute(allow_redirections=False)
        except (MovedError, AskError):
            redis.mark_stale()
            raise
    for at, wanted, name in waits:
        _check(replies[at], wanted, name)
    for at, name in alone:
        if replicas_of_myself(replies[at]):
            raise ReplicaTimeout(f"{name} has a replica the slot map did not show")
    skip = {at for at, _, _ in waits} | {at for at, _ in alone}
    return sum(int(r) for i, r in enumerate(replies) if i not in skip)


def _by_node(
    redis: BoundedRedisCluster,
    names: Sequence[bytes | str],
    replicas: Replicas,
    wait_ms: int,
    per_key: bool,
) -> list[tuple[str, tuple[ClusterNode, list[list[bytes]], int]]]:
    """The UNLINK groups each primary takes (one per key if ``per_key``, else
    one per slot), and the replicas it must reach (0 if ``wait_ms`` is 0)."""
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
    return list(nodes.items())


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
