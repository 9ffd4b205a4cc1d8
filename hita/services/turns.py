"""``Turns``: changes to one user's points take turns in this process.

Concurrent changes of one row wait for its lock in PostgreSQL, each holding a
pooled connection meanwhile: fifty redeems of one user at once fill the pool
and the queue in front of it, and the last are refused as overload while
PostgreSQL applies them one at a time anyway. Taking turns here first, they
hold one connection between them and other users' requests keep the rest. At
most ``max_waiting`` wait per user; one more is refused as overload (503 with
``Retry-After``), as the pool's own queue would refuse it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hita.errors import Overloaded


class Turns:
    def __init__(self, max_waiting: int) -> None:
        self._max_waiting = max_waiting
        self._queues: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> lock, callers

    @asynccontextmanager
    async def of(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s turn for the body of the ``async with``."""
        lock, callers = self._queues.get(key) or (asyncio.Lock(), 0)
        if callers > self._max_waiting:
            raise Overloaded(reason="user_queue_full")
        self._queues[key] = (lock, callers + 1)
        try:
            async with lock:
                yield
        finally:
            lock, callers = self._queues[key]
            if callers == 1:
                del self._queues[key]
            else:
                self._queues[key] = (lock, callers - 1)

    def __len__(self) -> int:
        return len(self._queues)
