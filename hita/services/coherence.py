"""``CacheCoherence``: every instance learns of every change, whoever made it.

The protocol (docs/cache.md, "No read older than an acknowledged write"):

1. A change and its outbox row commit together (triggers); PostgreSQL
   notifies every listening instance on commit.
2. The writer invalidates Redis before it answers, retrying within
   ``CACHE_INVALIDATION_BUDGET_MS`` whatever its breaker says. If Redis does
   not acknowledge in time, the writer answers only once its own barrier
   notification has come back (every instance has been handed the change).
3. An instance that hears of a change holds the affected entries suspect
   (never served from Redis) until it has itself seen an invalidation of
   them acknowledged by Redis; it applies one at once, and retries.
4. An instance whose channel is down is *blind*: it serves nothing from Redis
   (unless PostgreSQL itself is down, when no write can be acknowledged).
   On reconnecting it reads every outbox row still there before it trusts
   Redis again. Rows are deleted only by a sweep that has applied them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Final

from hita.cache.pending import Invalidation
from hita.db.database import Database
from hita.db.outbox import Change, Outbox, OutboxListener
from hita.errors import DatabaseUnavailable
from hita.services.cache_keys import CacheKeys

log = logging.getLogger(__name__)

SWEEP_JITTER: Final = 0.2  # fraction added to or taken from each sweep interval


class CacheCoherence:
    def __init__(
        self,
        keys: CacheKeys,
        database: Database,
        dsn: str,
        *,
        connect_timeout_s: float,
    ) -> None:
        self._keys = keys
        self._cache = keys.cache
        self._database = database
        self.outbox = Outbox(database)
        self.listener = OutboxListener(
            dsn,
            on_change=self._heard,
            on_deaf=self._deaf,
            on_listening=self._listening,
            connect_timeout_s=connect_timeout_s,
        )
        self.ready = asyncio.Event()
        self.swept = 0  # rows applied and deleted by this instance's sweeps
        self._cache.pending.blind = True  # until the channel is up and the backlog read

    async def listen_forever(self) -> None:
        await self.listener.run_forever()

    async def sweep_forever(self) -> None:
        """Apply and prune outbox rows, shared with other instances; the
        backstop for changes nobody could apply (every writer died, Redis away)."""
        interval = self._cache.config.outbox_sweep_s
        while True:
            await asyncio.sleep(interval * (1 + SWEEP_JITTER * (2 * random.random() - 1)))  # noqa: S311
            try:
                await self.sweep_once()
            except DatabaseUnavailable:
                log.debug("outbox sweep skipped: the database is unavailable")
            except Exception:
                log.exception("outbox sweep failed")

    async def sweep_once(self) -> int:
        """One batch of the outbox applied and pruned; how many rows."""
        swept = await self.outbox.sweep(self._apply)
        self.swept += swept
        return swept

    async def confirm_delivery(self) -> bool:
        """For a write whose invalidation Redis did not acknowledge: wait until
        every instance has been handed its change (bounded)."""
        timeout = self._cache.config.outbox_barrier_s
        started = time.monotonic()
        delivered = await self.listener.barrier(self._database, timeout)
        self._cache.stats.waited(delivered, time.monotonic() - started)
        if not delivered:
            log.error(
                "a write's invalidation reached neither Redis nor the notification channel"
                " within %.1f s; other instances may serve its old data until it is applied",
                timeout,
            )
        return delivered

    # -- the listener's callbacks ------------------------------------------------

    def _heard(self, change: Change) -> None:
        self._cache.invalidate_later(self.invalidation_for([change]), cause="outbox")

    def _deaf(self) -> None:
        self._cache.pending.blind = True
        self.ready.clear()

    async def _listening(self) -> None:
        """The channel is up: what was committed while we were deaf is still in
        the outbox (or was applied by a sweep): hold it suspect, then see again."""
        backlog = await self.outbox.pending()
        if backlog:
            invalidation = self.invalidation_for(backlog)
            if not await self._cache.apply_now(invalidation):
                self._cache.invalidate_later(invalidation, cause="outbox")
        self._cache.pending.blind = False
        self.ready.set()

    async def _apply(self, changes: Sequence[Change]) -> bool:
        return await self._cache.apply_now(self.invalidation_for(changes))

    def invalidation_for(self, changes: Sequence[Change]) -> Invalidation:
        return self._keys.invalidation_for_changes([(c.user_ids, c.details_only) for c in changes])
