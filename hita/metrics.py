"""Prometheus metrics, in a registry of the application's own (not the global
one), so several applications in one process never collide.

HTTP requests and latency are labelled by route template (``/v1.0/user/{user_id}``),
never by raw path, so clients cannot grow the label set. Cache and refresh
figures are read from the in-process counters at scrape time
(``hita.cache_metrics``). docs/observability.md lists every metric.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hita.cache.client import RedisCache
from hita.cache_metrics import (
    CacheCollector,
    CoherenceCollector,
    NearCollector,
    ReadPipeCollector,
    RouteReads,
)
from hita.db.gate import STANDING_WAIT_S, PoolGate
from hita.db.outbox_lag import OutboxLag
from hita.domain.typedefs import JsonDict
from hita.services.coherence import CacheCoherence
from hita.services.refresh import StatsRefresher

# prometheus_client's own switch for the ``_created`` series, read as it reads it
# (its module keeps the answer in a private attribute).
_CREATED_ENV: Final = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False")
_CREATED_SERIES: Final = _CREATED_ENV.lower() not in ("true", "1", "t")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHOD_LABELS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


class RefreshCollector(Collector):
    def __init__(self, refresher: StatsRefresher) -> None:
        self._refresher = refresher

    def collect(self) -> Iterator[Metric]:
        counters = self._refresher.counters
        yield CounterMetricFamily(
            "hita_stats_refresh_runs", "Scheduled refreshes run here", value=counters.runs
        )
        yield CounterMetricFamily(
            "hita_stats_refresh_failures",
            "Scheduled refreshes that failed",
            value=counters.failures,
        )
        yield CounterMetricFamily(
            "hita_stats_refresh_skipped",
            "Slots another instance took, or Redis was unreachable",
            value=counters.skipped,
        )
        yield GaugeMetricFamily(
            "hita_stats_refresh_duration_seconds",
            "Duration of the last successful refresh",
            value=counters.last_duration_s,
        )
        yield GaugeMetricFamily(
            "hita_stats_refresh_last_success_timestamp_seconds",
            "Unix time of the last successful refresh (0: none yet)",
            value=counters.last_success_at or 0.0,
        )


class LoadCollector(Collector):
    """Admission control and the queue in front of the PostgreSQL pool."""

    def __init__(self) -> None:
        self.gate: PoolGate | None = None
        # requests in flight now, at most, refused; the standing queueing delay (s)
        self.in_flight: Callable[[], tuple[int, int, int, float]] | None = None

    def collect(self) -> Iterator[Metric]:
        refusals = CounterMetricFamily(
            "hita_overload_refusals",
            "Requests answered 503 overloaded, per reason",
            labels=["reason"],
        )
        if self.in_flight is not None:
            now, peak, refused, delay_s = self.in_flight()
            yield GaugeMetricFamily("hita_http_in_flight", "Requests being served", value=now)
            yield GaugeMetricFamily(
                "hita_http_in_flight_peak", "Most requests served at once", value=peak
            )
            yield GaugeMetricFamily(
                "hita_http_queue_delay_seconds",
                "Standing queueing delay in the event loop (least lag over 100 ms)",
                value=delay_s,
            )
            refusals.add_metric(["queue_delay"], refused)
        gate = self.gate
        if gate is not None:
            for reason, count in sorted(gate.stats.refused.items()):
                refusals.add_metric([f"database_{reason}"], count)
            yield GaugeMetricFamily(
                "hita_db_queue_waiting",
                "Requests waiting for a PostgreSQL connection",
                value=gate.waiting,
            )
            yield GaugeMetricFamily(
                "hita_db_connections_in_use", "PostgreSQL connections held", value=gate.in_use
            )
            yield GaugeMetricFamily(
                "hita_db_pool_slots", "PostgreSQL connections the pool may hold", value=gate.slots
            )
            yield CounterMetricFamily(
                "hita_db_queue_waits",
                "Connection requests that had to wait",
                value=gate.stats.waits,
            )
            yield CounterMetricFamily(
                "hita_db_queue_wait_seconds",
                "Time spent waiting for a PostgreSQL connection",
                value=gate.stats.wait_seconds,
            )
            yield CounterMetricFamily(
                "hita_db_queue_standing_waits",
                "Connection requests that joined a standing queue (their wait cut to"
                f" {STANDING_WAIT_S * 1000:g} ms)",
                value=gate.stats.standing_waits,
            )
            yield CounterMetricFamily(
                "hita_db_shared_reads",
                "Reads answered by one query with other reads that waited for a connection",
                value=gate.stats.shared_reads,
            )
            yield GaugeMetricFamily(
                "hita_db_connection_hold_seconds",
                "Running mean of how long a connection is held",
                value=gate.mean_hold_s,
            )
        yield refusals


class _Count:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class _Latency:
    __slots__ = ("buckets", "created", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0.0] * size
        self.sum = 0.0
        self.created = time.time()


class RequestCollector(Collector):
    """``hita_http_requests_total{method,route,status}`` and
    ``hita_http_request_duration_seconds{method,route}``, sample for sample
    what prometheus_client's ``Counter`` and ``Histogram`` with these labels
    expose (buckets, ``_count``, ``_sum``, ``_created``, in the order the label
    sets were first seen), kept as plain numbers: an observation is a dict
    lookup and three additions instead of four locked increments. Requests are
    observed on the event loop only."""

    REQUESTS: Final = "hita_http_requests"
    LATENCY: Final = "hita_http_request_duration_seconds"

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self._bounds = (*(float(b) for b in buckets), float("inf"))
        self._les = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        self._counts: dict[tuple[str, str, str], _Count] = {}
        self._latencies: dict[tuple[str, str], _Latency] = {}
        self._children: dict[tuple[str, str, int], tuple[_Count, _Latency]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            count = self._counts.setdefault((method, route, str(status)), _Count())
            latency = self._latencies.get((method, route))
            if latency is None:
                latency = self._latencies[method, route] = _Latency(len(self._bounds))
            children = self._children[key] = (count, latency)
        count, latency = children
        count.value += 1.0
        latency.sum += seconds
        latency.buckets[bisect_left(self._bounds, seconds)] += 1.0

    def summary(self) -> JsonDict:
        """Every request so far: the count, the 5xx among them, and the latency
        histogram over all routes (``latency_counts`` cumulative, one more than
        ``latency_buckets_s``: the last counts every request)."""
        requests = sum(c.value for c in self._counts.values())
        errors = sum(c.value for (_, _, s), c in self._counts.items() if s.startswith("5"))
        merged = [0.0] * len(self._bounds)
        for series in self._latencies.values():
            for i, observed in enumerate(series.buckets):
                merged[i] += observed
        cumulative, running = [], 0.0
        for observed in merged:
            running += observed
            cumulative.append(int(running))
        return {
            "requests": int(requests),
            "server_errors": int(errors),
            "latency_buckets_s": list(self._bounds[:-1]),
            "latency_counts": cumulative,
        }

    def describe(self) -> Iterator[Metric]:
        yield Metric(
            self.REQUESTS, "HTTP requests, per method, route template and status", "counter"
        )
        yield Metric(self.LATENCY, "HTTP request latency per route template", "histogram")

    def collect(self) -> Iterator[Metric]:
        created = _CREATED_SERIES
        requests, latency = self.describe()
        for (method, route, status), count in list(self._counts.items()):
            labels = {"method": method, "route": route, "status": status}
            requests.add_sample(f"{self.REQUESTS}_total", labels, count.value)
            if created:
                requests.add_sample(f"{self.REQUESTS}_created", labels, count.created)
        yield requests
        for (method, route), series in list(self._latencies.items()):
            labels = {"method": method, "route": route}
            cumulative = 0.0
            for le, observed in zip(self._les, list(series.buckets), strict=True):
                cumulative += observed
                latency.add_sample(f"{self.LATENCY}_bucket", {**labels, "le": le}, cumulative)
            latency.add_sample(f"{self.LATENCY}_count", labels, cumulative)
            latency.add_sample(f"{self.LATENCY}_sum", labels, series.sum)
            if created:
                latency.add_sample(f"{self.LATENCY}_created", labels, series.created)
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = RequestCollector()
        self.registry.register(self._requests)
        self.client_disconnects = Counter(
            "hita_http_client_disconnects",
            "Requests whose client hung up before its answer (not server errors)",
            ["method", "route"],
            registry=self.registry,
        )
        self._load = LoadCollector()
        self.registry.register(self._load)
        self._route_reads = RouteReads()
        self.registry.register(self._route_reads)

    def watch_gate(self, gate: PoolGate) -> None:
        self._load.gate = gate

    def watch_in_flight(self, read: Callable[[], tuple[int, int, int, float]]) -> None:
        self._load.in_flight = read

    def client_disconnect(self, method: str, route: str) -> None:
        self.client_disconnects.labels(method, route).inc()

    def watch_cache(self, cache: RedisCache) -> None:
        self.registry.register(CacheCollector(cache))
        self.registry.register(NearCollector(cache))
        self.registry.register(ReadPipeCollector(cache))

    def watch_coherence(
        self, coherence: CacheCoherence, cache: RedisCache, lag: Callable[[], OutboxLag | None]
    ) -> None:
        """``lag``: the outbox lag last read (the scrape reads it first, at most once a second)."""
        self.registry.register(CoherenceCollector(coherence, cache, lag))

    def watch_refresher(self, refresher: StatsRefresher) -> None:
        self.registry.register(RefreshCollector(refresher))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request. Methods outside ``METHOD_LABELS`` count as
        ``OTHER``, so clients cannot grow the label set with made-up methods."""
        self._requests.observe(
            method if method in METHOD_LABELS else "OTHER", route, status, seconds
        )

    def observe_reads(self, route: str, reads: list[int]) -> None:
        """Count a request's cache reads by tier (``hita.cache.stats.READS``)."""
        self._route_reads.observe(route, reads)

    def http_summary(self) -> JsonDict:
        return self._requests.summary()

    def render(self) -> bytes:
        return generate_latest(self.registry)
