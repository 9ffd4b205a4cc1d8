"""``Admission``: refusals follow the queueing delay, never a count of requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from hita.api.admission import FLOOD_IN_FLIGHT, IDLE_PROBES, INTERVAL_S, PROBE_S, Admission

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


# -- the probe rests while nothing is in flight -----------------------------------


class Counted(Admission):
    """An ``Admission`` that keeps the times its probe observed the loop."""

    def __init__(self) -> None:
        super().__init__(TARGET_S)
        self.seen: list[float] = []

    def observe(self, lag_s: float, now: float) -> None:
        self.seen.append(now)
        super().observe(lag_s, now)


@asynccontextmanager
async def probing(gate: Admission) -> AsyncIterator[None]:
    """``gate``'s probe running on this loop."""
    probe = asyncio.create_task(gate.watch())
    try:
        yield
    finally:
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe


async def until_resting(gate: Admission, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not gate.resting:
        assert time.monotonic() < deadline, "the probe never rested"
        await asyncio.sleep(PROBE_S)


async def test_with_nothing_in_flight_the_probe_rests_until_a_request_wakes_it() -> None:
    """An idle instance wakes its loop for nothing: after an interval of probes
    with no request in flight the probe stops asking to be woken; the next
    request starts it again."""
    gate = Counted()
    seen = gate.seen
    async with probing(gate):
        await until_resting(gate)
        assert len(seen) >= IDLE_PROBES
        assert gate.delay_s < PROBE_S  # what the quiet probes saw, not a stale delay
        resting_since = len(seen)
        await asyncio.sleep(INTERVAL_S * 2)
        assert len(seen) == resting_since  # no probe ran while it rested
        assert gate.admit()
        assert not gate.resting
        await asyncio.sleep(INTERVAL_S / 2)
        assert len(seen) > resting_since  # probing again
        gate.done()
        await until_resting(gate)  # and resting again once nothing is in flight


async def test_a_probe_with_a_request_in_flight_never_rests() -> None:
    gate = Counted()
    async with probing(gate):
        assert gate.admit()  # a long request: in flight throughout
        await asyncio.sleep(INTERVAL_S * 3)
        assert not gate.resting
        assert len(gate.seen) >= IDLE_PROBES
    gate.done()


async def test_a_loop_kept_late_by_other_work_keeps_the_probe_running() -> None:
    """Nothing in flight, but the loop runs late (a task of the service's own
    holding it): the probe keeps measuring, so the first request after is
    judged by the delay it would meet."""
    gate = Admission(TARGET_S)
    stop = asyncio.Event()

    async def hog() -> None:
        while not stop.is_set():
            time.sleep(4 * PROBE_S)  # noqa: ASYNC251 - holding the loop is the point
            await asyncio.sleep(0)

    async with probing(gate):
        hogging = asyncio.create_task(hog())
        try:
            await asyncio.sleep(INTERVAL_S * 4)
            assert not gate.resting
            assert gate.delay_s > PROBE_S
        finally:
            stop.set()
            await hogging


def test_a_flood_arriving_at_a_resting_probe_counts_from_its_first_request() -> None:
    """The first request wakes the probe and makes it due ``PROBE_S`` later:
    a turn of the loop that reads a flood at once is measured as for a probe
    that never rested."""
    gate, clock = admission(rng=0.99)
    gate._resting = asyncio.Event()  # as ``watch`` leaves it
    gate.delay_s = 0.0
    clock.now = 10.0
    assert gate.admit()  # the first of the flood wakes the probe
    assert not gate.resting
    gate.in_flight = FLOOD_IN_FLIGHT
    assert gate.admit()  # the probe is not yet due
    clock.now += PROBE_S + 2 * TARGET_S + 0.01  # the turn ran this long past it
    assert not gate.admit()
