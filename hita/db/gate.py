"""The short, measured queue in front of the PostgreSQL pool.

The pool's size caps the load on PostgreSQL (when Redis is down every read
lands there, and the cap is what protects it). Without a gate, every request
beyond the cap would wait in asyncpg's queue for up to ``DB_ACQUIRE_TIMEOUT_S``
and then be told "database unavailable" while PostgreSQL idles. ``PoolGate``
holds one slot per pooled connection and lets at most ``max_waiters`` wait,
each at most ``budget_s`` (a request: what is left of its one budget for every
wait in queues, ``hita.deadline``), or ``STANDING_WAIT_S`` while the queue stands:
when even the shortest wait of the last ``STANDING_AFTER_S`` took longer than
``STANDING_TARGET_S``, the requests joining it would only wait behind others
for their whole budget (CoDel's standing delay, as Maurer's "Fail at Scale",
ACM Queue 2015, applies it to a server's queue). A queue that has merely not
been empty for a while is not standing: with Redis paused, 16 clients and a
burst of 50 on a pool of 2 keep it occupied for seconds while each waits
milliseconds, and cutting their waits to 25 ms refused 21 of the burst's 50.
(Refusing at once a wait expected to exceed the budget, from the measured
hold time, was tried and dropped: under a flood the hold time includes the
event loop's lag, and it refused nearly everything.) Refusals raise
``Overloaded``: 503 with ``Retry-After``, never "database unavailable".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

from hita.deadline import wait_budget
from hita.errors import Overloaded

HOLD_EWMA_WEIGHT: Final = 0.05  # weight of the newest hold time in the running mean
STANDING_AFTER_S: Final = 0.1  # the interval over which waits are watched (CoDel's)
STANDING_TARGET_S: Final = 0.05  # every wait of an interval longer than this: the queue stands
STANDING_WAIT_S: Final = 0.025  # the longest wait for a connection while it stands: 25 ms


@dataclass(slots=True)
class GateStats:
    waits: int = 0  # acquisitions that had to wait
    wait_seconds: float = 0.0  # their total waiting time
    refused: dict[str, int] = field(default_factory=lambda: {"queue_full": 0, "wait_budget": 0})
    shared_reads: int = 0  # reads answered by one query with others that waited (``shared_reads``)
    standing_waits: int = 0  # waiters that joined a standing queue (their wait: STANDING_WAIT_S)


class PoolGate:
    def __init__(
        self,
        slots: int,
        *,
        max_waiters: int,
        budget_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = slots
        self.max_waiters = max_waiters
        self.budget_s = budget_s
        self._clock = clock
        self._semaphore = asyncio.Semaphore(slots)
        self.waiting = 0
        self.in_use = 0
        self.mean_hold_s = 0.0
        self.stats = GateStats()
        self._emptied = clock()  # when the queue was last empty
        self._refused_at = float("-inf")  # when it last refused a request
        # The shortest wait of the last complete interval (CoDel's sojourn time).
        self.least_wait_s = 0.0
        self._window_start = clock()
        self._window_least = float("inf")

    def standing_s(self) -> float:
        """How long the queue has not been empty (0: it is empty now)."""
        return self._clock() - self._emptied if self.waiting else 0.0

    def stands(self) -> bool:
        """Whether a new waiter joins a standing queue: one that is not empty
        and in which even the shortest wait of the last interval took longer
        than ``STANDING_TARGET_S``. A queue that never empties while its waits
        stay short (16 clients and a burst of 50 on a pool of 2) is busy, not
        standing: its waiters get their whole budget."""
        return bool(self.waiting) and self.least_wait_s > STANDING_TARGET_S

    def _observe_wait(self, waited_s: float, now: float) -> None:
        self._window_least = min(self._window_least, waited_s)
        if now - self._window_start >= STANDING_AFTER_S:
            self.least_wait_s = self._window_least
            self._window_start, self._window_least = now, float("inf")

    def refusing_s(self) -> float:
        """How long the queue has stood, if it also refused a waiter within the
        last ``STANDING_AFTER_S``; else 0. A queue that never empties but serves
        every waiter within its limit is busy, not overloaded: 16 clients and a
        burst of 50 on a pool of 2 keep it standing for seconds, each waiting
        milliseconds (``Admission.downstream`` refuses at the door on this)."""
        if self._clock() - self._refused_at > STANDING_AFTER_S:
            return 0.0
        return self.standing_s()

    @property
    def free(self) -> bool:
        """A slot is free now and nobody waits: ``slot()`` would not wait."""
        return not self._semaphore.locked() and not self.waiting

    def refuse(self, reason: str) -> Overloaded:
        """Count a refusal for ``reason`` and the error to raise for it."""
        self.stats.refused[reason] += 1
        self._refused_at = self._clock()
        return Overloaded(reason=f"database_{reason}")

    async def _acquire(self) -> None:
        if not self._semaphore.locked():
            await self._semaphore.acquire()  # a free slot: no wait
            return
        if self.waiting >= self.max_waiters:
            raise self.refuse("queue_full")
        started = self._clock()
        if not self.waiting:
            self._emptied = started
        if self.stands():
            self.stats.standing_waits += 1
            wait_s = STANDING_WAIT_S
        else:
            wait_s = self.budget_s
        budget = wait_budget.get()
        if budget is not None:
            wait_s = min(wait_s, budget.left_s)
            if wait_s <= 0:  # this request has waited its budget already
                raise self.refuse("wait_budget")
        self.waiting += 1
        try:
            async with asyncio.timeout(wait_s):
                await self._semaphore.acquire()
        except TimeoutError:
            raise self.refuse("wait_budget") from None
        finally:
            self.waiting -= 1
            if not self.waiting:
                self._emptied = self._clock()
            now = self._clock()
            self.stats.waits += 1
            self.stats.wait_seconds += now - started
            self._observe_wait(now - started, now)
            if budget is not None:
                budget.spend(now - started)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        self.in_use += 1
        held_from = self._clock()
        try:
            yield
        finally:
            held = self._clock() - held_from
            self.mean_hold_s += HOLD_EWMA_WEIGHT * (held - self.mean_hold_s)
            self.in_use -= 1
            self._semaphore.release()
