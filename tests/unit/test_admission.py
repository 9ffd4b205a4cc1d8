"""``Admission``: refusals follow the queueing delay, never a count of requests."""

from __future__ import annotations

import asyncio

import pytest

from hita.api.admission import FLOOD_IN_FLIGHT, INTERVAL_S, PROBE_S, Admission

TARGET_S = 0.1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def admission(rng: float = 0.5) -> tuple[Admission, Clock]:
    clock = Clock()
    return Admission(TARGET_S, rng=lambda: rng, clock=clock), clock


def test_any_number_in_flight_is_admitted_while_nothing_waits() -> None:
    gate, _ = admission(rng=0.0)
    assert all(gate.admit() for _ in range(10_000))
    assert (gate.in_flight, gate.peak, gate.refused) == (10_000, 10_000, 0)
    for _ in range(10_000):
        gate.done()
    assert gate.in_flight == 0


def test_the_standing_delay_is_the_least_lag_of_an_interval() -> None:
    """A burst (one late probe) does not move it; a queue that never drains does."""
    gate, _ = admission()
    steps = int(INTERVAL_S / PROBE_S)
    now = 0.0
    for n in range(steps + 1):  # one interval: one probe 0.5 s late, the rest on time
        now += PROBE_S
        gate.observe(0.5 if n == 3 else 0.001, now)
    assert gate.delay_s == pytest.approx(0.001)
    for _ in range(2 * steps + 1):  # then every probe 150 ms late, a whole interval long
        now += PROBE_S
        gate.observe(0.15, now)
    assert gate.delay_s == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("delay_s", "rng", "admitted"),
    [
        (0.09, 0.0, True),  # under the target: always
        (0.15, 0.49, False),  # halfway to twice the target: refused with probability 1/2
        (0.15, 0.51, True),
        (0.2, 0.99, False),  # twice the target: always refused
    ],
)
def test_past_the_target_refusals_grow_with_the_delay(
    delay_s: float, rng: float, admitted: bool
) -> None:
    gate, _ = admission(rng)
    gate.delay_s = delay_s
    assert gate.admit() is admitted
    assert gate.refused == (0 if admitted else 1)


def test_a_flood_still_being_worked_through_counts_by_the_probe_s_lateness() -> None:
    gate, clock = admission(rng=0.99)
    gate.in_flight = FLOOD_IN_FLIGHT
    gate._due = clock.now = 10.0  # the probe is due now; the loop has not run it
    assert gate.admit()
    clock.now += 2 * TARGET_S + 0.01  # a turn of the loop has run this long past it
    assert not gate.admit()


def test_a_late_turn_with_few_requests_in_flight_refuses_nothing() -> None:
    """The loop was starved (CPU taken by other processes, a pause) while a few
    requests were in flight: not a flood of its own, nothing refused; a delay
    that stands over an interval still refuses."""
    gate, clock = admission(rng=0.99)
    gate.in_flight = FLOOD_IN_FLIGHT - 2
    gate._due = clock.now = 10.0
    clock.now += 5 * TARGET_S
    assert gate.admit()
    assert gate.refused == 0
    gate.delay_s = 3 * TARGET_S
    assert not gate.admit()


def test_a_queue_downstream_that_every_request_waits_in_counts_too() -> None:
    gate, _ = admission(rng=0.99)
    waited = [0.0]
    gate.downstream = lambda: waited[0]
    assert gate.admit()
    waited[0] = 3 * TARGET_S
    assert not gate.admit()


def test_a_target_of_zero_admits_everything() -> None:
    gate = Admission(0.0, rng=lambda: 0.0)
    gate.delay_s = 10.0
    assert gate.admit()


async def test_the_probe_measures_the_loop_s_lag() -> None:
    gate = Admission(TARGET_S)
    probe = asyncio.create_task(gate.watch())
    try:
        await asyncio.sleep(INTERVAL_S * 3)
        assert gate.delay_s < TARGET_S  # an idle loop
    finally:
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
    assert gate.admit()  # no probe: no lateness
