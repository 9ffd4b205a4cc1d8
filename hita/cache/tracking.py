"""Redis's server-assisted client-side caching, for L1, on every topology.

L1 may serve only while it hears of every change to our keys, wherever the
change is made: so ``Tracking`` keeps tracking on each node that can take a
write (``tracking_node.NodeTracking``) and says ``active`` only while all of
them are tracked. The nodes come from a source per topology:

* one server: the URL's;
* Sentinel: the master the sentinels name; a master change the command pool
  sees (a new connection, the answer ``READONLY``) or a ``+switch-master``
  moves tracking to the new master;
* Cluster: every master of ``CLUSTER NODES`` (so a slot's new owner, and the
  target of an ``ASK``, is tracked too); every change of a slot's owner the
  client learns (a reload of the slot map, a ``MOVED``) is a topology change.

Any node's tracking lost, and any topology change, empties L1 (all of it:
an entry read through an ``ASK`` was served by another node than its slot's
owner) and keeps it unused until every node is tracked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from redis.asyncio import Redis
from redis.event import AsyncAfterSlotsCacheRefreshEvent, AsyncEventListenerInterface
from redis.exceptions import RedisError

from hita.cache.connection import BoundedRedisCluster, BoundedSentinelPool, RedisClient
from hita.cache.connection import tracking_connection as open_connection
from hita.cache.near import REDIS_FLUSHED, TOPOLOGY, TRACKING_LOST
from hita.cache.tracking_node import SETUP_TIMEOUT_S, NodeTracking, Opener, TrackingError
from hita.config import RedisConfig

log = logging.getLogger(__name__)

RECONNECT_FIRST_S: Final = 0.1
RECONNECT_MAX_S: Final = 2.0
REFRESH_S: Final = 1.0  # the nodes to track are looked up again this often
SLOTS: Final = 16_384


class OnKeys(Protocol):
    def __call__(self, keys: list[str] | None, reason: str = ...) -> None:
        """``keys`` changed; None: forget everything, for ``reason`` (an L1 flush reason)."""


class NodeSource(Protocol):
    async def nodes(self) -> dict[str, Opener]:
        """The nodes to track now, by name, each with its connection maker."""


class Tracking:
    def __init__(self, source: NodeSource, prefixes: Sequence[str], on_keys: OnKeys) -> None:
        self._source = source
        self._prefixes = list(prefixes)
        self._on_keys = on_keys
        self._nodes: dict[str, NodeTracking] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._stale = True  # a topology change not yet reconciled
        self._epoch = 0  # topology changes so far
        self.active = False
        self._drained_this_turn = False  # a drain of this turn of the loop found tracking up
        self._closed_connections = 0
        self._closed_messages = 0

    # -- what the cache asks ---------------------------------------------------------

    @property
    def connections(self) -> int:
        """Tracking set-ups made, on every node ever tracked."""
        return self._closed_connections + sum(n.connections for n in self._nodes.values())

    @property
    def messages(self) -> int:
        return self._closed_messages + sum(n.messages for n in self._nodes.values())

    @property
    def client_id(self) -> int | None:
        """The first node's subscriber id (for tests on one server: CLIENT KILL)."""
        first = next(iter(self._nodes.values()), None)
        return None if first is None else first.client_id

    @property
    def node_names(self) -> list[str]:
        return list(self._nodes)

    def drain(self) -> bool:
        """Process every message already received, on every node; False while
        L1 may not serve (a node untracked, a topology change under way).

        Once per turn of the event loop: a drain that found tracking up serves
        every read until the loop's next turn (``_next_turn``). That is enough
        for a read to see every invalidation sent before what it answers
        arrived: whatever woke the reading task (a request's bytes, Redis's
        reply) was received by an I/O callback, and the wake-up it scheduled
        runs either before ``_next_turn``, so the bytes were received before
        the drain, or after it, and drains again. It rests on asyncio's own
        loop running callbacks in the order they were scheduled, before the
        I/O callbacks of the next turn (``BaseEventLoop._run_once``); on any
        other loop every drain reads the sockets."""
        if not self.active:
            return False
        if self._drained_this_turn:
            return True
        for node in self._nodes.values():
            if not node.drain():
                return False
        if self.active:  # else a node's drain found its tracking lost
            self._turn_drained()
        return self.active

    def _turn_drained(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing to share the drain with
            return
        if isinstance(loop, asyncio.BaseEventLoop):
            self._drained_this_turn = True
            loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._drained_this_turn = False

    def topology_changed(self, why: str) -> None:
        """The nodes to track may have changed: L1 is emptied and unused until
        they are looked up again and all tracked."""
        log.info("cache tracking: %s; L1 emptied until every master is tracked", why)
        self._stale = True
        self._epoch += 1
        self._update()
        self._on_keys(None, TOPOLOGY)
        self._changed.set()

    # -- life cycle --------------------------------------------------------------------

    async def run_forever(self) -> None:
        unknown = False
        try:
            while True:
                self._changed.clear()
                epoch = self._epoch
                try:
                    wanted = await self._source.nodes()
                except (RedisError, OSError, TrackingError) as exc:
                    level = logging.DEBUG if unknown else logging.WARNING  # once an episode
                    log.log(level, "cache tracking: masters unknown (%s)", exc.__class__.__name__)
                    unknown = True
                else:
                    unknown = False
                    self._reconcile(wanted, settled=epoch == self._epoch)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REFRESH_S):
                        await self._changed.wait()
        finally:
            for name in list(self._nodes):
                await self._stop(name)

    def _reconcile(self, wanted: dict[str, Opener], *, settled: bool) -> None:
        """Track ``wanted``; ``settled``: no topology change arrived while it
        was looked up (else it may be out of date, and L1 stays unused)."""
        gone = [name for name in self._nodes if name not in wanted]
        for name in gone:
            asyncio.get_running_loop().create_task(self._stop(name))
        if self._nodes and set(wanted) != set(self._nodes):
            # A master gone, or a new one (a promoted replica) whose changes
            # went unheard until now: what L1 holds may be out of date.
            self._on_keys(None, TOPOLOGY)
        for name, opener in wanted.items():
            if name not in self._nodes:
                node = NodeTracking(
                    name, opener, self._prefixes, self._keys_changed, self._node_lost
                )
                self._nodes[name] = node
                self._tasks[name] = asyncio.get_running_loop().create_task(self._keep(node))
        self._stale = not settled
        self._update()

    async def _stop(self, name: str) -> None:
        node, task = self._nodes.pop(name, None), self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if node is not None:
            self._closed_connections += node.connections
            self._closed_messages += node.messages
        self._update()

    async def _keep(self, node: NodeTracking) -> None:
        """One node's tracking, reconnected after each loss, backing off."""
        delay = RECONNECT_FIRST_S
        while True:
            try:
                await node.connect()
                log.info("cache tracking on %s (L1 near cache in use)", node.name)
                delay = RECONNECT_FIRST_S
                self._update()
                await node.until_lost()
            except (OSError, RedisError, TrackingError) as exc:
                log.warning("cache tracking on %s unavailable: %s", node.name, exc)
            finally:
                node.close()
                self._update()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _update(self) -> None:
        self.active = (
            not self._stale and bool(self._nodes) and all(n.active for n in self._nodes.values())
        )
        self._drained_this_turn = False  # the nodes changed: the next read drains them all

    def _keys_changed(self, keys: list[str] | None) -> None:
        if keys is None:
            self._on_keys(None, REDIS_FLUSHED)  # FLUSHALL / FLUSHDB
        else:
            self._on_keys(keys)

    def _node_lost(self, node: NodeTracking, why: str) -> None:
        log.warning("cache tracking on %s lost (%s): L1 emptied until it is back", node.name, why)
        self._update()
        self._on_keys(None, TRACKING_LOST)


# -- where the nodes come from ------------------------------------------------------------


class OneServer:
    def __init__(self, config: RedisConfig) -> None:
        self._opener = functools.partial(open_connection, config, None, SETUP_TIMEOUT_S)

    async def nodes(self) -> dict[str, Opener]:
        return {"server": self._opener}


class SentinelMaster:
    """The master the sentinels name, as the command pool last saw it."""

    def __init__(self, config: RedisConfig, pool: BoundedSentinelPool) -> None:
        self._config = config
        self._pool = pool

    async def nodes(self) -> dict[str, Opener]:
        address = self._pool.master_address or await self._pool.get_master_address()
        host, port = str(address[0]), int(address[1])
        opener = functools.partial(open_connection, self._config, (host, port), SETUP_TIMEOUT_S)
        return {f"{host}:{port}": opener}


class ClusterMasters:
    """Every primary of the client's slot map, and every master ``CLUSTER
    NODES`` lists and does not flag as failed (a node that owns no slot yet
    may answer an ``ASK``)."""

    def __init__(self, config: RedisConfig, redis: BoundedRedisCluster) -> None:
        self._config = config
        self._redis = redis

    async def nodes(self) -> dict[str, Opener]:
        listed: dict[str, dict[str, Any]] = await self._redis.execute_command(
            "CLUSTER NODES", target_nodes=BoundedRedisCluster.RANDOM
        )
        addresses = {
            address.partition("@")[0]
            for address, state in listed.items()
            if {"master"} <= set(str(state.get("flags", "")).split(","))
            and not {"fail", "noaddr", "handshake"} & set(str(state["flags"]).split(","))
        }
        owners = self._redis.nodes_manager.slots_cache.values()
        addresses |= {held[0].name for held in owners if held}
        masters: dict[str, Opener] = {}
        for address in sorted(addresses):
            host, _, port = address.rpartition(":")
            masters[address] = functools.partial(
                open_connection, self._config, (host, int(port)), SETUP_TIMEOUT_S
            )
        return masters


class SlotOwners(AsyncEventListenerInterface):
    """Calls ``changed`` when a refresh of the client's slot map (a reload, a
    MOVED) gives any slot another primary."""

    def __init__(self, redis: BoundedRedisCluster, changed: Callable[[str], None]) -> None:
        self._redis = redis
        self._changed = changed
        self._owners: tuple[str | None, ...] = ()

    def _snapshot(self) -> tuple[str | None, ...]:
        cache = self._redis.nodes_manager.slots_cache
        return tuple(cache[s][0].name if cache.get(s) else None for s in range(SLOTS))

    async def listen(self, event: object) -> None:
        owners = self._snapshot()
        if self._owners and owners != self._owners:
            self._changed("a slot changed primary")
        self._owners = owners


def tracking_for(
    config: RedisConfig, redis: RedisClient, prefixes: Sequence[str], on_keys: OnKeys
) -> Tracking:
    """The tracking L1 needs on ``redis``'s topology, wired to follow it."""
    if isinstance(redis, BoundedRedisCluster):
        tracking = Tracking(ClusterMasters(config, redis), prefixes, on_keys)
        listener = SlotOwners(redis, tracking.topology_changed)
        redis.events.register_listeners({AsyncAfterSlotsCacheRefreshEvent: [listener]})
        return tracking
    if isinstance(redis, Redis) and isinstance(redis.connection_pool, BoundedSentinelPool):
        pool = redis.connection_pool
        tracking = Tracking(SentinelMaster(config, pool), prefixes, on_keys)
        pool.master_listeners.append(lambda address: tracking.topology_changed("a new master"))
        return tracking
    return Tracking(OneServer(config), prefixes, on_keys)
