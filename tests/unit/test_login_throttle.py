"""The in-process fallback of the login throttle: windows, and a bounded table."""

from __future__ import annotations

from hita.services.login_throttle import LocalCounters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_local_counter_counts_within_its_window_and_then_starts_over() -> None:
    clock = Clock()
    counters = LocalCounters(max_keys=10, clock=clock)
    assert counters.add("a", 60).value == 1
    clock.now += 30
    second = counters.add("a", 60)
    assert (second.value, second.expires_in_s, second.retry_after_s) == (2, 30.0, 30)
    clock.now += 30
    assert counters.read("a").value == 0
    assert counters.add("a", 60).value == 1


def test_the_table_keeps_at_most_max_keys_dropping_the_oldest() -> None:
    counters = LocalCounters(max_keys=3, clock=Clock())
    for name in ("a", "b", "c", "d", "e"):
        counters.add(name, 60)
    counters.add("c", 60)
    counters.add("f", 60)
    assert len(counters) == 3
    assert [counters.read(n).value for n in ("a", "b", "d", "c", "e", "f")] == [0, 0, 0, 2, 1, 1]


def test_clear_forgets_a_counter() -> None:
    counters = LocalCounters(max_keys=3, clock=Clock())
    counters.add("a", 60)
    counters.clear("a")
    counters.clear("never seen")
    assert counters.read("a").value == 0
