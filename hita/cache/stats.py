"""In-process counters per cache type, read by the stats endpoints and metrics.

The cache code counts with small calls on these objects (``counters.hit(L1)``,
``stats.suspected(ticket)``), so what is counted stays next to where it
happens and these classes say what each number means. ``READS`` lets the
request that is being served tally its own reads by tier (the metrics count
them per route) and drain L1's invalidations once; the cache itself knows
nothing of routes.
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict, deque
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Final

# Tiers of a read, as indexes into a ``READS`` tally.
L1: Final = 0  # the in-process near cache
REDIS: Final = 1
MISS: Final = 2  # neither: the loader (PostgreSQL) answered
TIERS: Final = ("l1", "redis", "miss")


@dataclass(slots=True)
class ReadScope:
    """The cache reads of one operation (a request being served): its tally by
    tier, and whether L1 has caught up with Redis's invalidations for it.

    L1 serves a value only once every invalidation message received so far is
    processed (a system call on the tracking socket). Once per operation is
    enough: a write acknowledged before the operation began had its message
    on the socket then, so a drain at the operation's first L1 read processes
    it, and what L1 stores afterwards is fenced by the invalidations processed
    (``NearCache.may_store``). The operation's later reads are as fresh as its
    first, which is what "no read older than an acknowledged write" asks."""

    tally: list[int] = field(default_factory=lambda: [0, 0, 0])  # by tier: l1, redis, miss
    caught_up: bool = False  # L1 drained the tracking socket for this operation
    # Until the operation ends: a task it started that reads on later (it
    # shares the context) then drains for each read again.
    live: bool = True


# The reads of the request being served (set by the request middleware).
READS: ContextVar[ReadScope | None] = ContextVar("hita_cache_reads", default=None)

# Pending invalidations Redis acknowledged: before the writer answered, or later.
WITHIN_BUDGET: Final = "within_budget"
BACKGROUND: Final = "background"
ACK_STAGES: Final = (WITHIN_BUDGET, BACKGROUND)
# A writer's wait on the durable path: every instance was handed the change, or not in time.
WAIT_OUTCOMES: Final = ("confirmed", "lease_expiry")

TRANSITIONS_KEPT: Final = 10  # breaker transitions remembered with their time
TICKETS_KEPT: Final = 100_000  # pending invalidations remembered with their time


def _tally(tier: int) -> None:
    scope = READS.get()
    if scope is not None:
        scope.tally[tier] += 1


@dataclass(slots=True)
class TypeCounters:
    hits: int = 0  # from either tier
    misses: int = 0
    errors: int = 0
    sets: int = 0
    invalidations: int = 0
    lease_waits: int = 0  # a reader waited for another loader
    early_refreshes: int = 0  # XFetch recomputed before expiry
    l1_hits: int = 0  # hits the near cache served (part of ``hits``)
    l1_misses: int = 0  # the near cache was asked and held nothing
    fills_refused: int = 0  # a loaded value not stored: its lease was gone (invalidated)

    def hit(self, tier: int = REDIS) -> None:
        self.hits += 1
        if tier == L1:
            self.l1_hits += 1
        _tally(tier)

    def miss(self) -> None:
        self.misses += 1
        _tally(MISS)

    @property
    def hit_rate(self) -> float:
        """Percent of reads served from the cache, two decimals."""
        reads = self.hits + self.misses
        return round(100.0 * self.hits / reads, 2) if reads else 0.0

    def as_dict(self) -> dict[str, int | float]:
        return {**asdict(self), "hit_rate": self.hit_rate}


_SUMMED: Final = tuple(name for name in TypeCounters.__dataclass_fields__)


@dataclass(slots=True)
class CacheStats:
    types: defaultdict[str, TypeCounters] = field(default_factory=lambda: defaultdict(TypeCounters))
    breaker_transitions: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    # The last transitions, (unix time, "closed->open"), newest last.
    breaker_log: deque[tuple[float, str]] = field(
        default_factory=lambda: deque(maxlen=TRANSITIONS_KEPT)
    )
    # (cache type, cause) -> invalidations requested; causes: http, cli, admin, code...
    invalidation_causes: defaultdict[tuple[str, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    # reads served from Redis while the source was down for every instance
    served_while_source_down: int = 0
    invalidations_sent: int = 0  # invalidations this process took on (each made suspect)
    # Redis acknowledged pending invalidations: "within_budget" (before the
    # writer answered) or "background" (the applier, later).
    acknowledged: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    invalidation_retries: int = 0  # attempts that failed and were tried again
    replica_timeouts: int = 0  # attempts the master took and no replica confirmed (WAIT)
    # committed changes whose request-path invalidation raised (left to the outbox)
    invalidation_failures: int = 0
    # Writers that waited on the durable path because Redis did not acknowledge
    # in time, by outcome ("confirmed" by the readers' table, "lease_expiry"), and
    # the seconds waited.
    coherence_waits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    coherence_wait_seconds: float = 0.0
    _ticket_times: OrderedDict[int, float] = field(default_factory=OrderedDict)

    def __getitem__(self, cache_type: str) -> TypeCounters:
        return self.types[cache_type]

    def invalidated(self, cache_type: str, cause: str) -> None:
        self.types[cache_type].invalidations += 1
        self.invalidation_causes[cache_type, cause] += 1

    def transitioned(self, transition: str) -> None:
        self.breaker_transitions[transition] += 1
        self.breaker_log.append((time.time(), transition))

    def suspected(self, ticket: int) -> None:
        """One invalidation taken on, held suspect under ``ticket`` from now."""
        self.invalidations_sent += 1
        self._ticket_times[ticket] = time.monotonic()
        if len(self._ticket_times) > TICKETS_KEPT:
            self._ticket_times.popitem(last=False)

    def waited(self, confirmed: bool, seconds: float) -> None:
        self.coherence_waits[WAIT_OUTCOMES[0] if confirmed else WAIT_OUTCOMES[1]] += 1
        self.coherence_wait_seconds += seconds

    def pending_age(self, oldest_ticket: int | None) -> float:
        """Seconds since the oldest invalidation still pending was taken on
        (0 when none is); forgets the times of tickets settled before it."""
        times = self._ticket_times
        if oldest_ticket is None:
            times.clear()
            return 0.0
        while times and next(iter(times)) < oldest_ticket:
            times.popitem(last=False)
        if not times:
            return 0.0
        return max(0.0, time.monotonic() - next(iter(times.values())))

    def totals(self) -> TypeCounters:
        total = TypeCounters()
        for counters in self.types.values():
            for name in _SUMMED:
                setattr(total, name, getattr(total, name) + getattr(counters, name))
        return total

    def snapshot(self) -> dict[str, dict[str, int | float]]:
        return {name: counters.as_dict() for name, counters in sorted(self.types.items())}
