"""The scheduled refresh: recompute expensive entries before they expire.

One asyncio task per instance wakes once per interval (at a random moment
early in each time slot, so instances do not wake together) and tries to
claim the slot in Redis: exactly one instance per slot recomputes, the others
skip. The task survives exceptions and Redis outages (a slot that cannot be
claimed is skipped), counts and logs every run, and is cancelled and awaited
by its owner on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from hita.cache.client import RedisCache

log = logging.getLogger(__name__)

JOB_NAME: Final = "stats_refresh"


@dataclass(slots=True)
class RefreshCounters:
    runs: int = 0
    failures: int = 0
    skipped: int = 0  # another instance had the slot, or Redis was unreachable
    last_success_at: float | None = None  # unix time
    last_duration_s: float = 0.0
    slots: list[int] = field(default_factory=list)  # the last few slots this instance ran


class StatsRefresher:
    def __init__(
        self,
        cache: RedisCache,
        refresh: Callable[[], Awaitable[None]],
        interval_s: float,
        jitter: float,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._cache = cache
        self._refresh = refresh
        self.interval_s = interval_s
        self.jitter = min(max(jitter, 0.0), 0.5)
        self._clock = clock
        self._rng = rng
        self.counters = RefreshCounters()

    def delay_to_next_run(self) -> float:
        """Seconds until a random moment in the first ``jitter`` of the next slot."""
        now = self._clock()
        next_slot = (math.floor(now / self.interval_s) + 1) * self.interval_s
        return next_slot - now + self._rng() * self.jitter * self.interval_s

    async def run_forever(self) -> None:
        log.info("stats refresh every %.1f s", self.interval_s)
        while True:
            await asyncio.sleep(self.delay_to_next_run())
            await self.run_once()

    async def run_once(self) -> bool:
        """Claim this slot and refresh; False if skipped or failed. Never raises
        (but cancellation)."""
        started = time.perf_counter()
        try:
            slot = await self._cache.claim_slot(JOB_NAME, self.interval_s)
            if slot is None:
                self.counters.skipped += 1
                return False
            await self._refresh()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.counters.failures += 1
            log.exception("stats refresh failed; trying again next interval")
            return False
        self.counters.runs += 1
        self.counters.last_duration_s = time.perf_counter() - started
        self.counters.last_success_at = time.time()
        self.counters.slots = [*self.counters.slots[-9:], slot]
        log.info("stats refreshed in %.0f ms (slot %d)", self.counters.last_duration_s * 1000, slot)
        return True
