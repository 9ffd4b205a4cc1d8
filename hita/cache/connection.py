"""The Redis client for each topology: one server, a Redis Cluster, or a master
found through Sentinel. Explicit pool sizes, hiredis, short timeouts and no
hidden retries (a failed command fails once, fast, and the breaker decides)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeAlias

from redis._parsers import _AsyncHiredisParser
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.utils import HIREDIS_AVAILABLE

from hita.config import RedisConfig

log = logging.getLogger(__name__)

RedisClient: TypeAlias = Redis | RedisCluster
CLIENT_NAME = "hita"


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (the master's address asked of the sentinels on each new
    connection) with the bounded wait for a free connection of the other modes."""


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
    """

    def __init__(self, *, pool_timeout_s: float, reload_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool_timeout_s = pool_timeout_s
        self._reload_timeout_s = reload_timeout_s
        self._max_in_flight = int(kwargs["max_connections"])
        self._permits = asyncio.Semaphore(self._max_in_flight)
        self._reload_lock = asyncio.Lock()

    @asynccontextmanager
    async def permit(self) -> AsyncIterator[None]:
        if _HOLDS_PERMIT.get():  # a pipeline retrying one command after a redirection
            yield
            return
        try:
            async with asyncio.timeout(self._reload_timeout_s):
                await self._reload_if_stale()
        except TimeoutError:
            raise RedisConnectionError("Redis Cluster slot map reload timed out") from None
        try:
            async with asyncio.timeout(self._pool_timeout_s):
                await self._permits.acquire()
        except TimeoutError:
            raise RedisConnectionError("no free Redis Cluster connection") from None
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
                    await self.initialize()
                finally:
                    for _ in range(taken):
                        self._permits.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.permit():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if transaction or shard_hint:
            raise ValueError("cluster pipelines here are never transactions")
        return BoundedClusterPipeline(self)  # type: ignore[abstract]  # as redis-py does


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
    if not HIREDIS_AVAILABLE:
        raise RuntimeError("hiredis is required: install redis[hiredis]")
    if config.mode == "cluster":
        return _cluster(config)
    if config.mode == "sentinel":
        return _sentinel(config)
    if config.url is None:
        raise ValueError("Redis URL is not set")
    pool = BlockingConnectionPool.from_url(config.url, **_connection_kwargs(config))
    return Redis(connection_pool=pool)


def _connection_kwargs(config: RedisConfig) -> dict[str, Any]:
    return {
        "max_connections": config.max_connections,
        "timeout": config.pool_timeout_s,
        "socket_timeout": config.socket_timeout_s,
        "socket_connect_timeout": config.connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "parser_class": _AsyncHiredisParser,
        "client_name": CLIENT_NAME,
    }


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
        connection_pool_class=BlockingSentinelPool,
        password=config.password,
        **kwargs,
    )
    return client
