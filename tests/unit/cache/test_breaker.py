from __future__ import annotations

import pytest

from hita.cache.breaker import BreakerState, CircuitBreaker
from tests.helpers import state_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, open_s: float = 2.0) -> tuple[CircuitBreaker, Clock, list[str]]:
    clock = Clock()
    seen: list[str] = []
    breaker = CircuitBreaker(
        threshold,
        open_s,
        clock=clock,
        on_transition=lambda a, b: seen.append(f"{a.value}->{b.value}"),
    )
    return breaker, clock, seen


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    breaker, _, seen = make(threshold=3)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    assert seen == ["closed->open"]


def test_a_success_resets_the_count() -> None:
    breaker, _, _ = make(threshold=2)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED


def test_half_open_lets_exactly_one_probe_through_and_closes_on_success() -> None:
    breaker, clock, seen = make(threshold=1, open_s=2.0)
    breaker.record_failure()
    clock.now += 1.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert not breaker.allow()
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()
    assert seen == ["closed->open", "open->half_open", "half_open->closed"]


def test_a_failed_probe_opens_it_again_for_a_full_cool_down() -> None:
    breaker, clock, _ = make(threshold=1, open_s=2.0)
    breaker.record_failure()
    clock.now += 2.0
    assert breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    clock.now += 1.0
    assert not breaker.allow()


def test_an_abandoned_probe_lets_the_next_caller_probe() -> None:
    breaker, clock, _ = make(threshold=1)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CircuitBreaker(0, 1.0)


def test_with_a_probe_of_its_own_no_caller_is_the_half_open_probe() -> None:
    """The probe runs in the background: every caller is refused until it
    reports, so no request waits on a service that may still be away."""
    probes: list[int] = []
    clock = Clock()
    breaker = CircuitBreaker(1, 2.0, clock=clock, probe=lambda: probes.append(1))
    breaker.record_failure()
    clock.now += 2.1
    assert not breaker.allow()  # the probe started instead
    assert probes == [1]
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    assert probes == [1]
    breaker.record_failure()  # the probe failed: open again, for open_s
    assert state_of(breaker) is BreakerState.OPEN
    clock.now += 2.1
    assert not breaker.allow()
    assert probes == [1, 1]
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()


def test_a_trip_opens_at_once_whatever_the_threshold() -> None:
    breaker, clock, seen = make(threshold=5)
    breaker.trip()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    breaker.trip()  # already open: the cool-down is not restarted
    clock.now += 2.1
    assert breaker.allow()
    assert seen == ["closed->open", "open->half_open"]
