"""The chaos run's note of an instance's PostgreSQL queue: how long requests
waited, and why it answered 503 "overloaded"."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from hita.db.gate import GateStats
from hita.metrics import LoadCollector

from chaos_faults_db import cache_figures, queue_note


class _Gate:
    """What LoadCollector reads of a PoolGate."""

    def __init__(self, stats: GateStats, mean_hold_s: float) -> None:
        self.stats = stats
        self.waiting = self.in_use = self.slots = 0
        self.mean_hold_s = mean_hold_s


def exposition(
    door: int,
    *,
    wait_budget: int = 0,
    queue_full: int = 0,
    waits: int = 0,
    wait_seconds: float = 0.0,
    shared_reads: int = 0,
    mean_hold_s: float = 0.0,
) -> str:
    collector = LoadCollector()
    collector.in_flight = lambda: (0, 0, door, 0.0)
    refused = {"queue_full": queue_full, "wait_budget": wait_budget}
    collector.gate = _Gate(  # type: ignore[assignment]
        GateStats(waits, wait_seconds, refused, shared_reads), mean_hold_s
    )
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_the_service_own_exposition_is_read_by_reason() -> None:
    note = queue_note(
        exposition(
            7, wait_budget=3, waits=40, wait_seconds=4.0, shared_reads=31, mean_hold_s=0.0125
        )
    )
    assert note == (
        "40 waited for a connection, 100 ms on average; 31 reads shared a query;"
        " a connection held 12.5 ms"
        " (running mean); refused: database_wait_budget 3, queue_delay 7"
    )


def test_no_wait_and_no_refusal() -> None:
    assert queue_note(exposition(0)) == (
        "0 waited for a connection, 0 ms on average; 0 reads shared a query;"
        " a connection held 0.0 ms"
        " (running mean); refused: none"
    )


def test_an_exposition_without_the_queue_names_only_refusals() -> None:
    assert queue_note("") == "refused: none"


def test_the_cache_figures_that_send_requests_to_postgresql() -> None:
    text = """# TYPE hita_cache_replica_wait_timeouts counter
hita_cache_replica_wait_timeouts_total 12.0
# TYPE hita_cache_coherence_waits counter
hita_cache_coherence_waits_total{outcome="confirmed"} 0.0
hita_cache_coherence_waits_total{outcome="lease_expiry"} 3.0
# TYPE hita_cache_coherence_wait_seconds counter
hita_cache_coherence_wait_seconds_total 1.5
# TYPE hita_cache_misses counter
hita_cache_misses_total{type="user_details"} 40.0
hita_cache_misses_total{type="user_list"} 9.0
# TYPE hita_cache_errors counter
hita_cache_errors_total{type="user_details"} 0.0
"""
    assert cache_figures(text) == (
        "replica wait timeouts 12, durable waits lease_expiry 3, durable wait s 1.5,"
        " user_details misses 40"
    )
    assert queue_note(text) == f"refused: none; {cache_figures(text)}"
    assert cache_figures("") == ""
