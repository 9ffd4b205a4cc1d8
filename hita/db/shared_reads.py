"""Keyed reads that would wait for a PostgreSQL connection share one query.

When every pooled connection is busy (Redis down sends every read to
PostgreSQL; a burst outruns a small pool), reads of the same kind of row
queue one behind another, each for its own round trip: a token check and the
data it guards are two waits per request. ``SharedReads`` gathers the keyed
reads that arrive while a connection is awaited into one batch. The first
opens it, and a task waits for a connection on the batch's behalf; the
others join it. Once the connection is the batch's, the batch closes (a later
read opens the next one) and one query reads every key (``WHERE id = ANY``).

Why no read comes back older than a write acknowledged before it was asked:
a read joins only a batch whose query has not been sent, so that query starts
after the read arrived, and READ COMMITTED shows it every commit made before.
(Joining a query already sent, a single flight, would not be safe: it can
have started before the write committed.)

While a connection is free and no batch is open, a read is its own query: no
delay and no change while the pool keeps up. A read waits for its batch no
longer than what is left of its request's wait budget (``hita.deadline``)
and spends on that budget only the time until the batch had its connection,
as if it had waited in the queue itself. The batch waits with the queue's
own timeout, so a first reader with little budget left does not cut the
others' wait short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

import asyncpg

from hita.db.database import Database, Queryable
from hita.deadline import wait_budget
from hita.errors import Overloaded

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_BATCH: Final = 200  # keys one query reads at most; a full batch opens the next


@dataclass(eq=False, slots=True)
class _Batch(Generic[K, V]):
    done: asyncio.Future[Mapping[K, V]]
    keys: set[K] = field(default_factory=set)
    readers: int = 0
    sent_at: float | None = None  # when its connection was had and its query sent


class SharedReads(Generic[K, V]):
    """``get(key)``: ``fetch_one(database, key)`` while the pool keeps up; else
    the key's entry of a ``fetch_many(connection, keys)`` shared with the reads
    that waited with it (None: no such row)."""

    def __init__(
        self,
        database: Database,
        *,
        fetch_one: Callable[[Queryable], Callable[[K], Awaitable[V | None]]],
        fetch_many: Callable[[Queryable], Callable[[list[K]], Awaitable[Mapping[K, V]]]],
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._fetch_one = fetch_one
        self._fetch_many = fetch_many
        self._max_batch = max_batch
        self._clock = clock
        self._open: _Batch[K, V] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        gate = self._db.gate
        batch = self._open
        if batch is None or len(batch.keys) >= self._max_batch:
            if gate is None or gate.free:
                return await self._fetch_one(self._db)(key)
            batch = self._open_batch()
        batch.keys.add(key)
        batch.readers += 1
        return (await self._wait(batch)).get(key)

    def _open_batch(self) -> _Batch[K, V]:
        batch: _Batch[K, V] = _Batch(asyncio.get_running_loop().create_future())
        # Read even when every reader gave up waiting: no "never retrieved" warning.
        batch.done.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._open = batch
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return batch

    async def _run(self, batch: _Batch[K, V]) -> None:
        wait_budget.set(None)  # this task's own copy of the context: the queue's whole timeout

        async def read(conn: asyncpg.Connection) -> Mapping[K, V]:
            self._sent(batch)
            return await self._fetch_many(conn)(list(batch.keys))

        try:
            rows = await self._db.statement(read)
        except asyncio.CancelledError:
            self._close(batch)
            batch.done.cancel()
            raise
        except Exception as exc:
            self._close(batch)
            if isinstance(exc, Overloaded) and self._db.gate is not None:
                refused = self._db.gate.stats.refused
                if refused.get(_reason(exc)):  # counted by each reader instead
                    refused[_reason(exc)] -= 1
            batch.done.set_exception(exc)
        else:
            if self._db.gate is not None and batch.readers > 1:
                self._db.gate.stats.shared_reads += batch.readers
            batch.done.set_result(rows)

    def _sent(self, batch: _Batch[K, V]) -> None:
        """The batch has its connection and its query goes now: no read may
        join it any more (it could be asked after a write the query misses)."""
        self._close(batch)
        if batch.sent_at is None:
            batch.sent_at = self._clock()

    def _close(self, batch: _Batch[K, V]) -> None:
        if self._open is batch:
            self._open = None

    async def _wait(self, batch: _Batch[K, V]) -> Mapping[K, V]:
        gate = self._db.gate
        assert gate is not None  # batches are opened behind a gate only
        budget = wait_budget.get()
        if budget is None:
            await asyncio.wait([batch.done])
        else:
            started = self._clock()
            try:
                if budget.left_s > 0:
                    await asyncio.wait([batch.done], timeout=budget.left_s)
            finally:
                budget.spend(max((batch.sent_at or self._clock()) - started, 0.0))
            if not batch.done.done():
                raise gate.refuse("wait_budget")
        refused = None if batch.done.cancelled() else batch.done.exception()
        if isinstance(refused, Overloaded):  # the batch's wait was refused: so is each reader's
            raise gate.refuse(_reason(refused)) from None
        return batch.done.result()


def _reason(refused: Overloaded) -> str:
    """The gate's name for why it refused (``Overloaded.reason`` less its prefix)."""
    return refused.reason.removeprefix("database_")
