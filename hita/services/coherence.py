"""``CacheCoherence``: every instance learns of every change, whoever made it,
and trusts Redis only while it holds a lease that says so.

The protocol (docs/cache.md, "No read older than an acknowledged write"):

1. A change and its outbox row commit together (triggers).
2. Every ``CACHE_READER_RENEW_MS`` (at once when a writer waits) the instance
   renews its reader lease on its own session and, in the same statement,
   reads the rows committed since its last renewal. It makes what they name
   suspect (never served from Redis), queues their application to Redis, and
   only then extends the time until which it trusts Redis. The next renewal
   reports the snapshot whose rows it has so taken in.
3. The writer invalidates Redis before it answers. If Redis does not
   acknowledge it, the writer waits until every reader with a live lease has
   reported a snapshot that sees its commit, or until any lease granted before
   its commit has run out (``confirm_delivery``): either way, no instance can
   serve the old entry from Redis afterwards.
4. A suspect entry stays suspect on an instance until it has itself seen an
   invalidation of it acknowledged by Redis; then it says so (``acked_at``),
   and the sweep re-applies only rows nobody acknowledged.

Nothing here depends on noticing a failure in time: an instance that cannot
renew stops trusting Redis when its own lease runs out, on its own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from hita.cache.pending import Invalidation
from hita.config import CacheConfig
from hita.constants import NAMESPACES, USER_DETAILS
from hita.db.database import Database
from hita.db.outbox import Ack, Change, Outbox, ReaderSession, Renewal
from hita.db.snapshots import Snapshot, covers
from hita.errors import DependencyUnavailable, Overloaded
from hita.services.cache_keys import CacheKeys
from hita.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SWEEP_JITTER: Final = 0.2  # fraction added to or taken from each sweep interval
SWEEP_AGE_FACTOR: Final = 4  # the sweep takes rows unacknowledged for 4 leases
RECONNECT_FIRST_S: Final = 0.05
RECONNECT_MAX_S: Final = 1.0
CLOCK_DRIFT: Final = 0.01  # clocks may run 1 % apart: leases are trusted 1 % less
LEASE_MARGIN_S: Final = 0.05  # and 50 ms less again, for the server's clock
WATCH_POLL_S: Final = 0.005  # how often a waiting writer's readers are looked at
HINT_GRACE_S: Final = 0.02  # a new row is read this long after its notification
MAX_HELD_ROWS: Final = 10_000  # rows remembered until acknowledged
ACK_BATCH: Final = 500  # acknowledgements written in one statement
MAX_QUEUED_ACKS: Final = 10_000  # beyond, the oldest are left to the readers


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class _Waiter:
    done: asyncio.Future[None]
    snapshot: Snapshot | None = None  # taken after the writer's commit


@dataclass
class CoherenceStats:
    renewals: int = 0
    renewal_failures: int = 0
    rows_taken_in: int = 0
    rows_acked: int = 0
    swept: int = 0  # rows re-applied by this instance's sweeps
    compactions: int = 0


class CacheCoherence:
    def __init__(
        self,
        keys: CacheKeys,
        database: Database,
        dsn: str,
        config: CacheConfig,
        *,
        connect_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._cache = keys.cache
        self._config = config
        self._clock = clock
        self.outbox = Outbox(database)
        self.session = ReaderSession(
            dsn,
            instance_name(),
            connect_timeout_s=connect_timeout_s,
            timeout_s=max(config.reader_lease_s * 2 / 3, config.reader_renew_s),
            on_hint=self._hint,
            probe_send=self.outbox.notify,
        )
        self.ready = asyncio.Event()  # set by the first renewal
        self.stats = CoherenceStats()
        self._lease_s = config.reader_lease_s
        self._trusted_s = self._lease_s * (1 - CLOCK_DRIFT) - LEASE_MARGIN_S
        self._applied: str | None = None  # the snapshot whose rows were taken in
        self._held: list[tuple[int, int]] = []  # (ticket, row id) not yet acknowledged
        self._hinted = asyncio.Event()
        self._hurried = False
        self._waiters: list[_Waiter] = []
        self._watcher: asyncio.Task[None] | None = None
        self._acks: list[Ack] = []  # acknowledgements not yet written
        self._acker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cache.pending.trusted_until = 0.0  # until the first renewal
        self._cache.instance = self.session.instance

    # -- the lease ---------------------------------------------------------------

    async def run_forever(self) -> None:
        """Renew the lease and take in changes, reconnecting whenever the
        session fails; trust in Redis lapses on its own when renewals stop."""
        delay = RECONNECT_FIRST_S
        try:
            while True:
                try:
                    await self.session.connect()
                    delay = RECONNECT_FIRST_S
                    log.info("reader session open: taking in cache invalidations")
                    await self._renew_forever()
                except DependencyUnavailable as exc:
                    self.stats.renewal_failures += 1
                    log.warning("reader session lost (%s): Redis trusted until the lease ends", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            for task in [self._watcher, *self._tasks]:
                if task is not None:
                    await cancel_and_wait(task)
            await self.session.probe.close()
            await self._release()

    async def _renew_forever(self) -> None:
        while True:
            hurried = self._hurried
            self._hurried = False
            self._hinted.clear()
            await self.renew_once()
            if hurried:  # a writer waits: report at once the snapshot just taken in
                await self.renew_once()
            self.session.probe.tick()
            await self._until_next_renewal()

    async def _until_next_renewal(self) -> None:
        """The renewal period, cut short by a hint: a writer waiting (at once),
        or a new row (after ``HINT_GRACE_S``, by when its writer has usually
        acknowledged it, so it needs nothing from us)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.reader_renew_s):
                await self._hinted.wait()
                if not self._hurried:
                    await asyncio.sleep(HINT_GRACE_S)

    async def renew_once(self) -> int:
        """One renewal; how many new rows it took in."""
        started = self._clock()
        acked = self._ackable()
        renewal = await self.session.renew(self._lease_s, self._applied, acked)
        self._forget_acked(acked)
        self._take_in(renewal)
        if not self.ready.is_set():  # the backlog: applied before the first warm-up
            await self._cache.settle()
        self._cache.pending.trusted_until = started + self._trusted_s
        self.stats.renewals += 1
        self.ready.set()
        self._cache.note_source_reachable(self.session.instance, self._lease_s)
        return len(renewal.changes)

    def _take_in(self, renewal: Renewal) -> None:
        """Make what the new rows name suspect and queue its application,
        before the lease that covers them is extended."""
        if renewal.changes:
            ticket = self._cache.invalidate_later(
                self.invalidation_for(renewal.changes), cause="outbox"
            )
            self._held += [(ticket, change.id) for change in renewal.changes]
            del self._held[:-MAX_HELD_ROWS]  # the oldest are left to the sweep
            self.stats.rows_taken_in += len(renewal.changes)
        self._applied = renewal.snapshot

    def _ackable(self) -> list[int]:
        settled = self._cache.pending.settled_through()
        return [row for ticket, row in self._held if ticket <= settled]

    def _forget_acked(self, acked: Sequence[int]) -> None:
        if acked:
            done = set(acked)
            self._held = [(t, row) for t, row in self._held if row not in done]
            self.stats.rows_acked += len(acked)

    def _hint(self, hurry: bool) -> None:
        self._hurried = self._hurried or hurry
        self._hinted.set()

    async def _release(self) -> None:
        try:
            await self.session.release()
        except DependencyUnavailable:
            pass
        finally:
            await self.session.close()

    # -- a writer ------------------------------------------------------------------

    def acknowledge(
        self, xids: Sequence[str], user_id: str | None, cache_types: frozenset[str]
    ) -> None:
        """The request that committed ``xids`` had Redis acknowledge its own
        invalidation of ``cache_types`` for ``user_id``: mark the outbox rows
        it covered acknowledged (in the background), so no other instance
        applies them again. Acknowledgements are an economy, never needed for
        the promise: they go in batches through the shared pool, never on the
        reader session (a write load there starved the renewals, and the
        instance stopped trusting Redis), and past ``MAX_QUEUED_ACKS`` the
        oldest are left to the readers."""
        if not xids or user_id is None or USER_DETAILS not in cache_types:
            return
        everything = set(NAMESPACES) <= cache_types
        self._acks += [Ack(xid, user_id, everything) for xid in xids]
        del self._acks[:-MAX_QUEUED_ACKS]
        if self._acker is None or self._acker.done():
            self._acker = asyncio.get_running_loop().create_task(
                self._acknowledge_queued(),
                context=contextvars.Context(),  # no request's budget
            )
            self._tasks.add(self._acker)
            self._acker.add_done_callback(self._tasks.discard)

    async def _acknowledge_queued(self) -> None:
        while self._acks:
            batch, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
            try:
                self.stats.rows_acked += await self.outbox.acknowledge(batch)
            except (DependencyUnavailable, Overloaded):  # the rows stay for the readers
                log.debug("outbox rows left unacknowledged: the database is busy or away")

    async def confirm_delivery(self) -> bool:
        """Wait until no instance can serve from Redis anything committed before
        this call: each live reader has reported a snapshot that sees it (True),
        or any lease granted before it has run out on this process's own clock
        (False; just as safe). A reader whose lease ended less than a lease ago
        by PostgreSQL's clock still counts as live: a jump of that clock does
        not end the wait while the reader still trusts Redis. Never raises."""
        started = self._clock()
        confirmed = await self._wait_for_readers()
        self._cache.stats.waited(confirmed, self._clock() - started)
        return confirmed

    async def _wait_for_readers(self) -> bool:
        waiter = _Waiter(asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        try:
            async with asyncio.timeout(self._trusted_s * (1 + CLOCK_DRIFT) + LEASE_MARGIN_S):
                await asyncio.shield(waiter.done)
        except TimeoutError:
            return False
        finally:
            self._waiters.remove(waiter)
        return True

    async def _watch(self) -> None:
        """While writers wait, look at the readers' table every few ms; for
        each new writer, first ask every reader to renew at once."""
        while self._waiters:
            asked = [w for w in self._waiters if w.snapshot is None]
            try:
                if asked:
                    await self.session.hurry()
                readers = await self.session.readers(grace_s=self._lease_s)
            except DependencyUnavailable:
                await asyncio.sleep(self._config.reader_renew_s)
                continue
            now = Snapshot.parse(readers.snapshot)
            applied = [None if a is None else Snapshot.parse(a) for a in readers.applied]
            for waiter in asked:
                waiter.snapshot = now
            for waiter in self._waiters:
                seen = waiter.snapshot
                if seen is None or waiter.done.done():
                    continue
                if all(a is not None and covers(a, seen) for a in applied):
                    waiter.done.set_result(None)
            await asyncio.sleep(WATCH_POLL_S)

    # -- the sweep: a backstop ---------------------------------------------------

    async def sweep_forever(self) -> None:
        """Re-apply rows nobody acknowledged, prune old ones, bound the backlog."""
        interval = self._config.outbox_sweep_s
        while True:
            await asyncio.sleep(interval * (1 + SWEEP_JITTER * (2 * random.random() - 1)))  # noqa: S311
            try:
                await self.sweep_once()
            except DependencyUnavailable:
                log.debug("outbox sweep skipped: the database is unavailable")
            except Exception:
                log.exception("outbox sweep failed")

    async def sweep_once(self) -> int:
        """One pass; how many rows it re-applied."""
        swept = await self.outbox.sweep(self._apply, older_than_s=self._lease_s * SWEEP_AGE_FACTOR)
        self.stats.swept += swept
        await self.outbox.prune(self._config.outbox_retention_s)
        if await self.outbox.compact(self._config.outbox_max_rows):
            self.stats.compactions += 1
        return swept

    async def _apply(self, changes: Sequence[Change]) -> bool:
        return await self._cache.apply_now(self.invalidation_for(changes))

    def invalidation_for(self, changes: Sequence[Change]) -> Invalidation:
        return self._keys.invalidation_for_changes([(c.user_ids, c.details_only) for c in changes])
