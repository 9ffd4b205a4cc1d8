"""Prometheus collectors of the cache: per cache type, L1 and its tracking,
invalidations and the coherence channel, reads per route and tier.

Every figure is read at scrape time from the objects that count it
(``CacheStats``, ``NearStats``, ``Tracking``, ``OutboxListener``...), so a
scrape costs nothing on the request path. Labels are bounded: cache types,
fixed reasons and outcomes, route templates; never ids or keys.
docs/observability.md lists every metric and what a bad value means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hita.cache.breaker import BreakerState
from hita.cache.client import RedisCache
from hita.cache.near import EVICTION_REASONS, FLUSH_REASONS
from hita.cache.stats import ACK_STAGES, TIERS, WAIT_OUTCOMES
from hita.constants import CACHE_TYPES
from hita.db.outbox_lag import OutboxLag
from hita.services.coherence import CacheCoherence

_PER_TYPE: Final = (
    ("hits", "Cache hits, from L1 or Redis"),
    ("misses", "Cache misses: the loader (PostgreSQL) answered"),
    ("errors", "Redis errors and unreadable entries"),
    ("sets", "Entries stored in Redis"),
    ("lease_waits", "Reads that waited for another loader's lease"),
    ("early_refreshes", "Entries recomputed before expiry (XFetch)"),
    ("l1_hits", "Hits served by the in-process near cache (L1), part of hita_cache_hits"),
    ("l1_misses", "L1 lookups that found nothing (L1 in use)"),
    ("fills_refused", "Loaded values not stored: their lease was gone (an invalidation won)"),
)


def counter(
    name: str, documentation: str, labels: list[str], samples: Iterable[tuple[list[str], float]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def gauge(
    name: str, documentation: str, labels: list[str], samples: Iterable[tuple[list[str], float]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _types(seen: Iterable[str]) -> list[str]:
    """The five cache types, plus any other one counted (``cache_test``, ``lock``...)."""
    return sorted({*CACHE_TYPES, *seen})


class CacheCollector(Collector):
    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        stats = self._cache.stats
        types = _types(stats.types)
        for name, documentation in _PER_TYPE:
            samples = [([t], getattr(stats.types.get(t), name, 0)) for t in types]
            yield counter(f"hita_cache_{name}", documentation, ["type"], samples)
        yield counter(
            "hita_cache_invalidations",
            "Cache invalidations requested, per type and cause",
            ["type", "cause"],
            ((list(key), n) for key, n in sorted(stats.invalidation_causes.items())),
        )
        breaker = self._cache.breaker.state
        yield gauge(
            "hita_cache_breaker_state",
            "1 for the circuit breaker's current state",
            ["state"],
            (([s.value], 1.0 if breaker is s else 0.0) for s in BreakerState),
        )
        yield counter(
            "hita_cache_breaker_transitions",
            "Circuit breaker transitions",
            ["transition"],
            (([t], n) for t, n in sorted(stats.breaker_transitions.items())),
        )
        yield from self._invalidations()

    def _invalidations(self) -> Iterator[Metric]:
        stats, pending = self._cache.stats, self._cache.pending
        yield GaugeMetricFamily(
            "hita_cache_pending_invalidations",
            "Invalidations waiting for Redis to answer",
            value=len(pending),
        )
        yield GaugeMetricFamily(
            "hita_cache_pending_invalidation_age_seconds",
            "Age of the oldest invalidation waiting for Redis (0: none)",
            value=stats.pending_age(pending.oldest_ticket()),
        )
        yield CounterMetricFamily(
            "hita_cache_invalidations_sent",
            "Invalidations this instance took on and sent to Redis",
            value=stats.invalidations_sent,
        )
        yield counter(
            "hita_cache_invalidations_acknowledged",
            "Pending invalidations Redis acknowledged, per stage",
            ["stage"],
            (([s], stats.acknowledged.get(s, 0)) for s in ACK_STAGES),
        )
        yield CounterMetricFamily(
            "hita_cache_invalidation_retries",
            "Invalidation attempts that failed and were tried again",
            value=stats.invalidation_retries,
        )
        yield CounterMetricFamily(
            "hita_cache_replica_wait_timeouts",
            "Invalidation attempts the master took but no replica confirmed in time (WAIT)",
            value=stats.replica_timeouts,
        )
        yield CounterMetricFamily(
            "hita_cache_invalidation_failures",
            "Committed changes whose request-path invalidation raised (left to the outbox)",
            value=stats.invalidation_failures,
        )
        yield counter(
            "hita_cache_coherence_waits",
            "Writes that waited on the durable path (Redis did not acknowledge in time)",
            ["outcome"],
            (([o], stats.coherence_waits.get(o, 0)) for o in WAIT_OUTCOMES),
        )
        yield CounterMetricFamily(
            "hita_cache_coherence_wait_seconds",
            "Seconds writers spent waiting on the durable path",
            value=stats.coherence_wait_seconds,
        )


# The read pipe's counters: (metric suffix, ReadPipe attribute, documentation).
_READ_PIPE: Final = (
    ("reads", "reads", "GETs and MGETs sent through the read pipe"),
    ("writes", "batches", "Writes of the read pipe, each carrying the reads asked for meanwhile"),
    (
        "connections",
        "connections",
        "Connections the read pipe opened (the first, then one after each failure)",
    ),
)


class ReadPipeCollector(Collector):
    """The read pipe of one server (``hita.cache.read_pipe``): zeros elsewhere."""

    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        pipe = self._cache.read_pipe
        for suffix, attribute, documentation in _READ_PIPE:
            value = getattr(pipe, attribute) if pipe is not None else 0
            yield CounterMetricFamily(f"hita_cache_read_pipe_{suffix}", documentation, value=value)


class NearCollector(Collector):
    """L1 and the tracking connection that keeps it coherent."""

    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        near, tracking = self._cache.near, self._cache.tracking
        yield GaugeMetricFamily(
            "hita_cache_l1_enabled", "1 when this instance runs an L1", value=near is not None
        )
        yield GaugeMetricFamily(
            "hita_cache_tracking_connected",
            "1 while Redis tracking is connected (L1 may serve)",
            value=tracking is not None and tracking.active,
        )
        yield CounterMetricFamily(
            "hita_cache_tracking_connections",
            "Tracking connections opened (the first, then each reconnect)",
            value=tracking.connections if tracking is not None else 0,
        )
        yield CounterMetricFamily(
            "hita_cache_tracking_messages",
            "Invalidation messages received from Redis tracking",
            value=tracking.messages if tracking is not None else 0,
        )
        usage = near.usage() if near is not None else {}
        dropped = near.stats.dropped if near is not None else {}
        flushes = near.stats.flush_reasons if near is not None else {}
        types = _types(usage)
        yield gauge(
            "hita_cache_l1_entries",
            "Entries held in L1",
            ["type"],
            (([t], usage.get(t, (0, 0))[0]) for t in types),
        )
        yield gauge(
            "hita_cache_l1_bytes",
            "Bytes of stored entries held in L1",
            ["type"],
            (([t], usage.get(t, (0, 0))[1]) for t in types),
        )
        yield counter(
            "hita_cache_l1_evictions",
            "Entries dropped from L1, per reason: bound, invalidation, flush",
            ["type", "reason"],
            (([t, r], dropped.get((t, r), 0)) for t in types for r in EVICTION_REASONS),
        )
        yield counter(
            "hita_cache_l1_flushes",
            "Times L1 was emptied, per reason",
            ["reason"],
            (([r], flushes.get(r, 0)) for r in FLUSH_REASONS),
        )


class CoherenceCollector(Collector):
    """The PostgreSQL channel every change is announced on, and the outbox."""

    def __init__(
        self, coherence: CacheCoherence, cache: RedisCache, lag: Callable[[], OutboxLag | None]
    ) -> None:
        self._coherence = coherence
        self._cache = cache
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        coherence, session = self._coherence, self._coherence.session
        yield GaugeMetricFamily(
            "hita_coherence_session_up",
            "1 while this instance's reader session to PostgreSQL is open",
            value=session.open,
        )
        yield CounterMetricFamily(
            "hita_coherence_session_connections",
            "Reader sessions opened (the first, then each reconnect)",
            value=session.connections,
        )
        yield GaugeMetricFamily(
            "hita_coherence_listen_deaf",
            "1 while the reader session's LISTEN does not deliver its own probe",
            value=session.probe.deaf is True,
        )
        yield GaugeMetricFamily(
            "hita_coherence_trusted",
            "1 while this instance's reader lease lets it trust Redis",
            value=self._cache.pending.trusted,
        )
        for name, help_, value in (
            ("renewals", "Reader lease renewals that succeeded", coherence.stats.renewals),
            ("renewal_failures", "Reader sessions lost", coherence.stats.renewal_failures),
            ("rows_taken_in", "Outbox rows this instance took in", coherence.stats.rows_taken_in),
            ("rows_acknowledged", "Outbox rows marked applied", coherence.stats.rows_acked),
        ):
            yield CounterMetricFamily(f"hita_coherence_{name}", help_, value=value)
        yield CounterMetricFamily(
            "hita_outbox_swept_rows",
            "Outbox rows nobody acknowledged that this instance's sweep re-applied",
            value=coherence.stats.swept,
        )
        yield CounterMetricFamily(
            "hita_outbox_compactions",
            "Times this instance collapsed an overgrown backlog into one row",
            value=coherence.stats.compactions,
        )
        lag = self._lag()
        yield GaugeMetricFamily(
            "hita_outbox_rows",
            "Outbox rows not yet acknowledged (at the last read, at most 1 s old)",
            value=lag.rows if lag is not None else 0,
        )
        yield GaugeMetricFamily(
            "hita_outbox_oldest_age_seconds",
            "Age of the oldest unacknowledged outbox row (0: none)",
            value=lag.oldest_age_s if lag is not None else 0,
        )


class RouteReads(Collector):
    """``hita_cache_route_reads_total{route, tier}``: the cache reads of each
    route's requests (the token check's included) by the tier that answered.
    Plain numbers, observed on the event loop only."""

    NAME: Final = "hita_cache_route_reads"

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}

    def observe(self, route: str, reads: list[int]) -> None:
        counts = self._counts.get(route)
        if counts is None:
            counts = self._counts[route] = [0] * len(TIERS)
        for tier, n in enumerate(reads):
            counts[tier] += n

    def collect(self) -> Iterator[Metric]:
        yield counter(
            self.NAME,
            "Cache reads of each route's requests, per tier that answered (l1, redis, miss)",
            ["route", "tier"],
            (
                ([route, tier], counts[i])
                for route, counts in sorted(self._counts.items())
                for i, tier in enumerate(TIERS)
            ),
        )
