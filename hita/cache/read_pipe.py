"""The plain reads of one Redis server (GET, MGET), pipelined on one
connection of their own: the reads that requests ask for while a batch is on
the wire go out together in the next write, and their replies come back in
order (auto-pipelining, as ioredis and Lettuce do). Under load a read costs a
share of one write and one read instead of a pooled connection's own round
trip; alone, it is one round trip, as before.

What it keeps of the pool's rules:

* **Timeouts.** A batch is written and its replies read within
  ``socket_timeout``, the pool's command timeout; a read waits at most for
  the batch on the wire and then its own. A failure (a timeout, a broken connection) fails every
  read of the batch and of the queue behind it with the same error class the
  pooled command raises, so the breaker sees what it saw, and the connection
  is dropped; the next read opens another.
* **Order.** A read is sent after it was asked for, never before, and the
  replies of one connection come back in the order sent: what the cache's
  fences and suspects judge (the epoch when the read was asked) stays
  conservative.
* **Cancellation.** A caller that leaves (its client hung up) leaves its
  reply to be read and dropped: the connection stays in step, unlike a
  pooled command cut short, which must close its connection.

An error reply (``ResponseError``) fails its own read only. Used on a single
server (``RedisConfig.mode == "standalone"``); Sentinel and Cluster keep
redis-py's pools, whose connections follow a failover and the slot map.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.cache.connection import BoundedConnectionPool

_Queued = tuple[tuple[str, ...], "asyncio.Future[Any]"]


class ReadPipe:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: AbstractConnection | None = None
        self._queue: list[_Queued] = []
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # writes made (metrics: reads per write)
        self.reads = 0  # commands sent in them
        self.connections = 0  # connections opened

    def call(self, *args: str) -> Awaitable[Any]:
        """The reply to one read-only command; raises what redis-py would."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(RedisConnectionError("the read pipe is closed"))
            return future
        self._queue.append((args, future))
        if self._pump is None:  # it starts at the loop's next turn: this turn's reads join
            # In a context of its own: it outlives the request that started
            # it, whose id and read tallies are not its own.
            self._pump = loop.create_task(
                self._run(), name="hita-read-pipe", context=contextvars.Context()
            )
        return future

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._pump = None

    async def _send(self, batch: list[_Queued]) -> None:
        live = [(args, future) for args, future in batch if not future.done()]
        if not live:
            return
        try:
            await self._exchange(live)
        except BaseException as exc:  # the connection is out of step or gone
            await self._drop()
            # The batch's unanswered reads, and those queued behind it: each
            # fails now rather than waiting for another connection's timeout.
            for _, future in (*live, *self._queue):
                _fail(future, exc)
            self._queue = []
            if not isinstance(exc, Exception):
                raise

    async def _exchange(self, live: list[_Queued]) -> None:
        """Write ``live``'s commands in one buffer and hand each reply to its
        caller, in order; one timer for it all (a timer per reply cost more
        than parsing it)."""
        conn = await self._connection()
        try:
            async with asyncio.timeout(conn.socket_timeout):
                await conn.send_packed_command(pack([args for args, _ in live]), check_health=False)
                self.batches += 1
                self.reads += len(live)
                for _, future in live:
                    try:
                        reply = await conn.read_response(timeout=math.inf)
                    except ResponseError as exc:  # its read fails; the stream is in step
                        _fail(future, exc)
                    else:
                        if not future.done():  # a caller who left: its reply is dropped
                            future.set_result(reply)
        except TimeoutError:  # the batch's timer, not redis-py's
            raise RedisTimeoutError("Timeout reading from Redis (read pipe)") from None

    async def _connection(self) -> AbstractConnection:
        conn = self._conn
        if conn is None or not conn.is_connected:
            await self._drop()
            conn = self._pool.make_connection()  # type: ignore[no-untyped-call]
            self._conn = conn
            self.connections += 1
            await conn.connect()
        return conn

    async def _drop(self, *, nowait: bool = True) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect(nowait=nowait)

    async def aclose(self) -> None:
        self._closed = True
        pump = self._pump
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        await self._drop(nowait=False)  # closed before the loop may close


def pack(commands: list[tuple[str, ...]]) -> bytes:
    """Commands of text arguments in RESP, as one buffer (redis-py's
    ``pack_commands`` does the same through its encoder, at several times the
    cost per read; ``tests/unit/cache/test_read_pipe_parts.py`` checks they agree)."""
    out = bytearray()
    for args in commands:
        out += b"*%d\r\n" % len(args)
        for arg in args:
            data = arg.encode()
            out += b"$%d\r\n" % len(data)
            out += data
            out += b"\r\n"
    return bytes(out)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``future`` with a fresh error of its own (one instance shared by
    every caller would collect all their tracebacks): a Redis error as its
    own class; anything else (a cancelled pipe, a bug in a driver) as a
    dropped connection, which the cache takes as an outage and not as a 500."""
    if future.done():
        return
    copy: BaseException = RedisConnectionError(f"read pipe: {exc!r}")
    if isinstance(exc, RedisError):
        with contextlib.suppress(Exception):  # a class that cannot be made again so
            copy = type(exc)(*exc.args)
    future.set_exception(copy)


def read_pipe_for(redis: Any) -> ReadPipe | None:
    """A read pipe for a client of one server (its bounded pool makes the
    pipe's connection as it makes its own: address, TLS, password, database,
    client name, timeouts); None for Sentinel, Cluster and any other client."""
    if isinstance(redis, Redis) and type(redis.connection_pool) is BoundedConnectionPool:
        return ReadPipe(redis.connection_pool)
    return None
