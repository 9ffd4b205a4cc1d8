"""The chaos run's note of why an instance answered 503 "overloaded"."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from hita.db.gate import GateStats
from hita.metrics import LoadCollector

from chaos_faults_db import overload_refusals


class _Gate:
    """What LoadCollector reads of a PoolGate."""

    def __init__(self, stats: GateStats) -> None:
        self.stats = stats
        self.waiting = self.in_use = self.slots = 0
        self.mean_hold_s = 0.0


def exposition(door: int, *, wait_budget: int = 0, queue_full: int = 0) -> str:
    collector = LoadCollector()
    collector.in_flight = lambda: (0, 0, door, 0.0)
    collector.gate = _Gate(  # type: ignore[assignment]
        GateStats(refused={"queue_full": queue_full, "wait_budget": wait_budget})
    )
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_the_service_own_exposition_is_read_by_reason() -> None:
    assert (
        overload_refusals(exposition(7, wait_budget=3)) == "database_wait_budget 3, queue_delay 7"
    )


def test_no_refusal_reads_none() -> None:
    assert overload_refusals(exposition(0)) == "none"
