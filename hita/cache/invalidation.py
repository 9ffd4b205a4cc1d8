"""Invalidations: writes that matter.

An invalidation is never skipped by an open breaker. It is made *suspect*
first (``PendingInvalidations``: no read of those entries is served from
Redis in this process), then applied, retried within a budget; once Redis
acknowledges it, the suspicion is lifted. What cannot be applied in time
stays suspect and a background applier keeps trying until Redis answers.

Namespaces are invalidated in O(1) by deleting their generation (the next
read makes a new one; a deletion is taken even by a Redis that is out of
memory, where a write of a new token would be refused), single entries
by ``UNLINK``, families by ``SCAN`` + batched ``UNLINK`` (never ``KEYS``).
Every form is idempotent, so the same change may be applied by the writer,
by every instance that hears of it, and by the outbox sweep. On a master with
a replica, an application counts only once a replica has it (``replication``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from hita.cache import replication, topology
from hita.cache.core import CacheCore, _Failed
from hita.cache.keys import Key, Namespace
from hita.cache.pending import Invalidation
from hita.cache.replication import ReplicaTimeout
from hita.cache.stats import BACKGROUND, WITHIN_BUDGET

log = logging.getLogger(__name__)

T = TypeVar("T")

SCAN_COUNT: Final = 1_000  # keys per SCAN page
UNLINK_BATCH: Final = 1_000  # keys per UNLINK
RETRY_FIRST_S: Final = 0.02  # first pause between attempts of one invalidation
RETRY_MAX_S: Final = 0.5  # longest pause of the background applier


MISSED: Final = _Failed()  # an attempt the master took and no replica confirmed in time


class Invalidator(CacheCore):
    _applier: asyncio.Task[None] | None = None

    async def invalidate(
        self,
        namespaces: Sequence[Namespace] = (),
        keys: Sequence[Key] = (),
        patterns: Sequence[str] = (),
        *,
        cause: str = "code",
        budget_s: float | None = None,
    ) -> bool:
        """Bump namespaces, delete entries and families, retrying for up to
        ``budget_s`` (default ``CACHE_INVALIDATION_BUDGET_MS``). True once Redis
        has acknowledged it. False at once while the breaker is open, or when
        the budget runs out: it stays suspect here (never served from Redis)
        and the background applier keeps trying, whatever the breaker says."""
        invalidation = Invalidation(tuple(namespaces), tuple(keys), tuple(patterns))
        if not invalidation:
            return True
        ticket = self._suspect(invalidation, cause)
        budget = self.config.invalidation_budget_s if budget_s is None else budget_s
        if self.breaker.allow() and await self._apply_within(invalidation, budget):
            self.pending.applied(invalidation, ticket)
            self.stats.acknowledged[WITHIN_BUDGET] += 1
            return True
        if self._applier is None or self._applier.done():  # one line per episode
            log.warning(
                "Redis did not take an invalidation within %.0f ms: its entries are"
                " held suspect (read from PostgreSQL) until it does",
                budget * 1000,
            )
        self._kick_applier()
        return False

    def invalidate_later(self, invalidation: Invalidation, *, cause: str) -> int:
        """Another process changed data: suspect it at once, apply it soon.
        Returns its ticket (``pending.settled_through()`` passes it once applied)."""
        if not invalidation:
            return self.pending.epoch
        ticket = self._suspect(invalidation, cause)
        self._kick_applier()
        return ticket

    async def settle(self) -> bool:
        """One attempt at everything pending, breaker or not; True if nothing
        is left (the backlog taken in at start, applied before serving)."""
        snapshot = self.pending.snapshot()
        if snapshot.invalidation and await self.apply_now(snapshot.invalidation):
            self.pending.applied(snapshot.invalidation, snapshot.ticket)
        return not self.pending

    async def apply_now(self, invalidation: Invalidation) -> bool:
        """One attempt, breaker or not; True if Redis acknowledged it (the outbox sweep)."""
        return not isinstance(await self._attempt(invalidation), _Failed)

    async def _attempt(self, invalidation: Invalidation) -> _Failed | None:
        return await self._confirmed("pending", "apply", lambda: self._apply(invalidation))

    async def _confirmed(
        self, cache_type: str, op: str, fn: Callable[[], Awaitable[T]]
    ) -> T | _Failed:
        """``_call`` (forced), where a write the master took but no replica
        confirmed in time is ``MISSED``: not acknowledged, and no failure of
        Redis (the breaker counts it a success)."""
        try:
            return await self._call(cache_type, op, fn, force=True)
        except ReplicaTimeout as exc:
            self.breaker.record_success()
            self.stats.replica_timeouts += 1
            self.errors.report(logging.WARNING, exc, f"cache {op} ({cache_type}) not replicated")
            self.replicas.missed()
            return MISSED

    async def delete_pattern(self, pattern: str, *, cause: str = "code") -> int:
        """Remove every key matching ``pattern`` with SCAN and batched UNLINK
        (never KEYS, which blocks Redis for every client). Returns the count;
        0 with the pattern kept pending when Redis could not be reached."""
        invalidation = Invalidation(patterns=(pattern,))
        ticket = self._suspect(invalidation, cause)
        result = await self._confirmed(
            self._family_of(pattern), "delete_pattern", lambda: self._unlink_matching(pattern)
        )
        if isinstance(result, _Failed):
            self._kick_applier()
            return 0
        self.pending.applied(invalidation, ticket)
        self.stats.acknowledged[WITHIN_BUDGET] += 1
        return result

    # -- applying ---------------------------------------------------------------

    async def _apply_within(self, invalidation: Invalidation, budget_s: float) -> bool:
        """Attempts until one is acknowledged or the budget runs out; an attempt
        cut short by the budget counts against the breaker like a timeout. A
        replica that did not confirm it ends the attempts at once: Redis is
        well, and the writer takes the durable path."""
        delay = RETRY_FIRST_S
        try:
            async with asyncio.timeout(budget_s):
                while isinstance(outcome := await self._attempt(invalidation), _Failed):
                    if outcome is MISSED:
                        return False
                    self.stats.invalidation_retries += 1
                    await asyncio.sleep(delay)
                    delay *= 2
        except TimeoutError:
            self.breaker.record_failure()
            return False
        return True

    async def _apply(self, invalidation: Invalidation) -> None:
        # A namespace's generation (a new one on read), then the entries.
        names = [n.generation_key for n in invalidation.namespaces]
        names += [k.redis_key for k in invalidation.keys]
        await self._unlink(names, per_key=True)
        for pattern in invalidation.patterns:
            await self._unlink_matching(pattern)

    async def _unlink(self, names: Sequence[str | bytes], *, per_key: bool = False) -> int:
        wait_s = self.config.replica_wait_s
        return await replication.unlink(self._redis, names, self.replicas, wait_s, per_key=per_key)

    def _kick_applier(self) -> None:
        if self._applier is None or self._applier.done():
            self._applier = asyncio.get_running_loop().create_task(self._drain_pending())
            self._tasks.add(self._applier)
            self._applier.add_done_callback(self._tasks.discard)

    async def _drain_pending(self) -> None:
        """Apply what is pending until nothing is, backing off while Redis is away."""
        delay = 0.0
        while self.pending:
            if delay:
                await asyncio.sleep(delay)
            snapshot = self.pending.snapshot()
            if await self.apply_now(snapshot.invalidation):
                self.pending.applied(snapshot.invalidation, snapshot.ticket)
                self.stats.acknowledged[BACKGROUND] += 1
                delay = 0.0
            else:
                self.stats.invalidation_retries += 1
                delay = min(max(delay * 2, RETRY_FIRST_S), RETRY_MAX_S)
        log.debug("pending invalidations applied")

    async def _unlink_matching(self, pattern: str) -> int:
        """SCAN and batched UNLINK (never KEYS), each batch WAITed for like any."""
        removed = 0
        batch: list[bytes] = []
        async for name in topology.scan_keys(self._redis, pattern, SCAN_COUNT):
            batch.append(name)
            if len(batch) >= UNLINK_BATCH:
                removed += await self._unlink(batch)
                batch = []
        return removed + await self._unlink(batch)

    # -- helpers ----------------------------------------------------------------

    def _suspect(self, invalidation: Invalidation, cause: str) -> int:
        """Count it, hold it suspect (and out of L1) until applied; its ticket."""
        self._count(invalidation, cause)
        ticket = self.pending.add(invalidation, self._family_of, self.keys.pattern)
        self.stats.suspected(ticket)
        self._forget_near(invalidation)
        return ticket

    def _count(self, invalidation: Invalidation, cause: str) -> None:
        names = {n.name for n in invalidation.namespaces}
        names |= {k.cache_type for k in invalidation.keys}
        names |= {self._family_of(p) for p in invalidation.patterns}
        for name in names:
            self.stats.invalidated(name, cause)

    def _family_of(self, pattern: str) -> str:
        """Only whole families under our prefix: ``<prefix><name>:...``."""
        rest = pattern.removeprefix(self.keys.prefix)
        name, sep, _ = rest.partition(":")
        if not pattern.startswith(self.keys.prefix) or not sep or not name.isidentifier():
            raise ValueError(f"refusing pattern {pattern!r}: it must start with a cache name")
        return name
