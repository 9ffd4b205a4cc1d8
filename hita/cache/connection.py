"""The Redis client for each topology: one server, a Redis Cluster, or a master
found through Sentinel. Explicit pool sizes, hiredis, short timeouts and no
hidden retries (a failed command fails once, fast, and the breaker decides)."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeAlias

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection as SyncAbstractConnection
from redis.connection import Connection as SyncConnection
from redis.connection import parse_url
from redis.event import EventDispatcher
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.utils import HIREDIS_AVAILABLE

from hita.config import RedisConfig

log = logging.getLogger(__name__)

RedisClient: TypeAlias = Redis | RedisCluster
CLIENT_NAME = "hita"


class PoolExhausted(RedisConnectionError):
    """No connection freed up within the pool's wait: our own overload, not
    Redis's failure (a ConnectionError, so every caller treats it as one)."""

    def __init__(self, message: str = "No connection available.") -> None:
        super().__init__(message)


class BoundedConnectionPool(ConnectionPool):
    """At most ``max_connections``; a command that finds them all busy waits up
    to ``timeout`` seconds for one, in arrival order.

    redis-py's ``BlockingConnectionPool`` does the same, but every command pays
    for its condition lock and an asyncio timeout even when a connection is
    free, which costs a cached read a noticeable share of its time (see
    scripts/bench_cache.py for the whole read against a raw GET). Here a
    free connection is taken at once; only a command that has to wait arms a
    timer, and a released connection is handed to the oldest waiter.
    """

    def __init__(self, *, timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        # Waiters in arrival order, so also in deadline order; one timer, for
        # the oldest, expires them (no timer per waiter).
        self._turns: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self._waiting = 0  # live waiters: newcomers queue behind them
        self._timer: asyncio.TimerHandle | None = None

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        if self._waiting == 0 and self.can_get_connection():
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                pass
        deadline = asyncio.get_running_loop().time() + self.timeout
        first = True
        while True:
            await self._wait_turn(deadline, first=first)
            first = False
            if self.can_get_connection():
                try:
                    return await super().get_connection()  # type: ignore[no-untyped-call]
                except MaxConnectionsError:
                    pass

    async def _wait_turn(self, deadline: float, *, first: bool) -> None:
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            raise PoolExhausted()
        turn: asyncio.Future[None] = loop.create_future()
        if first:
            self._turns.append((deadline, turn))
        else:  # woken, but beaten to the connection: keep our place in line
            self._turns.appendleft((deadline, turn))
        if self._timer is None or self._timer.when() > deadline:
            self._arm(deadline)
        self._waiting += 1
        try:
            await turn  # raises PoolExhausted if the timer expires it
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._wake()  # woken, but cancelled before it ran: pass it on
            raise
        finally:
            self._waiting -= 1

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self._turns and (self._turns[0][1].done() or self._turns[0][0] <= now):
            _, turn = self._turns.popleft()
            if not turn.done():
                turn.set_exception(PoolExhausted())
        if self._turns:
            self._arm(self._turns[0][0])

    async def release(self, connection: AbstractConnection) -> None:
        await super().release(connection)
        self._wake()

    def _wake(self) -> None:
        while self._turns:
            _, turn = self._turns.popleft()
            if not turn.done():
                turn.set_result(None)
                return


MasterListener: TypeAlias = Callable[[tuple[str, int]], None]


class BoundedSentinelPool(SentinelConnectionPool, BoundedConnectionPool):
    """Sentinel's pool (the master's address asked of the sentinels on each new
    connection) with the bounded wait for a free connection of the other modes.
    Each master change it sees is told to ``master_listeners`` before any
    command goes to the new master (L1 follows it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.master_listeners: list[MasterListener] = []

    async def get_master_address(self) -> Any:
        before = self.master_address
        address = await super().get_master_address()  # type: ignore[no-untyped-call]
        if before is not None and tuple(address) != tuple(before):
            log.warning("Redis master moved from %s:%s to %s:%s", *before, *address)
            for listener in self.master_listeners:
                listener((str(address[0]), int(address[1])))
        return address


_HOLDS_PERMIT: ContextVar[bool] = ContextVar("hita_cluster_permit", default=False)


class BoundedRedisCluster(RedisCluster):
    """redis-py's asyncio cluster client, made safe under concurrency.

    * It fails at once (MaxConnectionsError) when a node's pool is full: here
      the commands in flight are bounded to ``max_connections`` and the next
      one waits up to ``pool_timeout_s`` for a turn, as ``BlockingConnectionPool``
      does in the other modes.
    * Reloading the slot map (on first use, and after a connection error, as
      when a primary fails) while other commands are in flight recycles their
      connections under them. Here one task reloads it alone, once the commands
      in flight have finished; the others wait for it.
    * A pipeline that fails to reach a node does not mark the map stale (only
      its retries would, and there are none): here it does, so the invalidation
      pipelines find a promoted replica like single commands do.
    * Its ``aclose`` does nothing while the map is stale (as a failover leaves
      it), and a node a reload drops keeps any connection a command holding it
      opens later (a probe that listed the primaries before the reload): here
      ``close_all`` closes every node's connections, dropped ones included.
    """

    def __init__(self, *, pool_timeout_s: float, reload_timeout_s: float, **kwargs: Any) -> None:
        # Told of every refresh of the slot map (a reload, a MOVED): L1 follows it.
        self.events: EventDispatcher = kwargs.setdefault("event_dispatcher", EventDispatcher())
        super().__init__(**kwargs)
        self._pool_timeout_s = pool_timeout_s
        self._reload_timeout_s = reload_timeout_s
        self._max_in_flight = int(kwargs["max_connections"])
        self._permits = asyncio.Semaphore(self._max_in_flight)
        self._reload_lock = asyncio.Lock()
        self._dropped: dict[str, ClusterNode] = {}  # by address: one per address at most
        self.reloads = 0  # reloads of the slot map so far (what was read of it may be out of date)

    @asynccontextmanager
    async def permit(self) -> AsyncIterator[None]:
        if _HOLDS_PERMIT.get():  # a pipeline retrying one command after a redirection
            yield
            return
        if self._stale():
            try:
                async with asyncio.timeout(self._reload_timeout_s):
                    await self._reload_if_stale()
            except TimeoutError:
                raise RedisConnectionError("Redis Cluster slot map reload timed out") from None
        if not self._permits.locked():  # a permit is free: taken at once, no timer armed
            await self._permits.acquire()
        else:
            try:
                async with asyncio.timeout(self._pool_timeout_s):
                    await self._permits.acquire()
            except TimeoutError:
                raise PoolExhausted("no free Redis Cluster connection") from None
        held = _HOLDS_PERMIT.set(True)
        try:
            yield
        except AttributeError as exc:  # a connection recycled mid-command by a reload
            raise RedisConnectionError("connection reset by a slot map reload") from exc
        finally:
            _HOLDS_PERMIT.reset(held)
            self._permits.release()

    def mark_stale(self) -> None:
        """Reload the slot map before the next command."""
        self._initialize = True

    def _stale(self) -> bool:
        """Whether the next command would reload the slot map."""
        return bool(self._initialize)

    async def _reload_if_stale(self) -> None:
        while self._stale():
            async with self._reload_lock:
                if not self._stale():
                    return
                taken = 0
                try:
                    for _ in range(self._max_in_flight):  # wait out the commands in flight
                        await self._permits.acquire()
                        taken += 1
                    before = self._nodes()
                    await self.initialize()
                    self.reloads += 1
                    await self._close_dropped(before)
                finally:
                    for _ in range(taken):
                        self._permits.release()

    def _nodes(self) -> list[ClusterNode]:
        """Every node object the client holds, dropped ones included."""
        manager = self.nodes_manager
        held = (*manager.nodes_cache.values(), *manager.startup_nodes.values())
        return list({id(node): node for node in (*held, *self._dropped.values())}.values())

    async def _close_dropped(self, before: list[ClusterNode]) -> None:
        """Close the connections of the nodes a reload dropped (no command is in
        flight: the reload holds every permit), and keep them to close again
        at ``close_all``."""
        now = {id(node) for node in self._nodes()}
        for node in before:
            if id(node) not in now:
                self._dropped[node.name] = node
        await _disconnect(list(self._dropped.values()))

    async def close_all(self) -> None:
        """Close the client and every connection of every node it ever held."""
        await self.aclose()
        await _disconnect(self._nodes())

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.permit():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if transaction or shard_hint:
            raise ValueError("cluster pipelines here are never transactions")
        return BoundedClusterPipeline(self)  # type: ignore[abstract]  # as redis-py does


async def _disconnect(nodes: list[ClusterNode]) -> None:
    """Close the nodes' connections; an error closing one does not stop the others."""
    await asyncio.gather(*(node.disconnect() for node in nodes), return_exceptions=True)


class BoundedClusterPipeline(ClusterPipeline):
    cluster_client: BoundedRedisCluster

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with self.cluster_client.permit():
            try:
                return await super().execute(raise_on_error, allow_redirections)
            except RedisCluster.ERRORS_ALLOW_RETRY:
                self.cluster_client.mark_stale()
                raise


def create_redis(config: RedisConfig) -> RedisClient:
    """A client over bounded pools. Opening it does no I/O: connections are made
    on first use, so the service starts even when Redis is down."""
    if not HIREDIS_AVAILABLE:  # then redis-py's default parser is hiredis's
        raise RuntimeError("hiredis is required: install redis[hiredis]")
    if config.mode == "cluster":
        return _cluster(config)
    if config.mode == "sentinel":
        return _sentinel(config)
    if config.url is None:
        raise ValueError("Redis URL is not set")
    pool = BoundedConnectionPool.from_url(config.url, **_connection_kwargs(config))
    return Redis(connection_pool=pool)


def _connection_kwargs(config: RedisConfig) -> dict[str, Any]:
    return {
        "max_connections": config.max_connections,
        "timeout": config.pool_timeout_s,
        "socket_timeout": config.socket_timeout_s,
        "socket_connect_timeout": config.connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "client_name": CLIENT_NAME,
    }


def tracking_connection(
    config: RedisConfig, address: tuple[str, int] | None, timeout_s: float
) -> SyncAbstractConnection:
    """A blocking redis-py connection, not yet open, made from the settings the
    command connections are made from: the URL's scheme, TLS options, user,
    password and database (one server), or a node's address with the
    cluster's or the sentinels' password; the client name. L1's tracking
    opens it in a thread, then reads its socket without blocking."""
    common: dict[str, Any] = {
        "protocol": 2,  # invalidations as pub/sub messages on the subscriber (RESP2)
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "client_name": CLIENT_NAME,
    }
    if address is None:
        if config.url is None:
            raise ValueError("Redis URL is not set")
        kwargs = parse_url(config.url)  # type: ignore[no-untyped-call]
        cls: type[SyncAbstractConnection] = kwargs.pop("connection_class", SyncConnection)
        return cls(**kwargs, **common)
    host, port = address
    return SyncConnection(  # type: ignore[no-untyped-call]
        host=host, port=port, password=config.password, **common
    )


def _cluster(config: RedisConfig) -> RedisCluster:
    """Slots are learnt from any reachable node; a connection error marks the
    map stale, and the next command reloads it (so a promoted replica is found)."""
    log.info("Redis Cluster from %d seed nodes", len(config.nodes))
    return BoundedRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in config.nodes],
        max_connections=config.max_connections,  # per node, and commands in flight
        pool_timeout_s=config.pool_timeout_s,
        # drain the commands in flight, then CLUSTER SLOTS and COMMAND
        reload_timeout_s=config.pool_timeout_s + 2 * config.socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=config.socket_timeout_s,
        socket_connect_timeout=config.connect_timeout_s,
        password=config.password,
        client_name=CLIENT_NAME,
    )


def _sentinel(config: RedisConfig) -> Redis:
    """The master named ``sentinel_master``; each new connection asks the
    sentinels where it is, so a failover is followed without a restart."""
    log.info("Redis master %r through %d sentinels", config.sentinel_master, len(config.nodes))
    timeouts = {
        "socket_timeout": config.socket_timeout_s,
        "socket_connect_timeout": config.connect_timeout_s,
    }
    sentinel = Sentinel(list(config.nodes), sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
    kwargs = _connection_kwargs(config)
    client: Redis = sentinel.master_for(
        config.sentinel_master,
        connection_pool_class=BoundedSentinelPool,
        password=config.password,
        **kwargs,
    )
    return client
