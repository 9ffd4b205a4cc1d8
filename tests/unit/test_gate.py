"""``PoolGate``: a short, bounded queue in front of the pool; refusals are overload."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hita.db.gate import STANDING_AFTER_S, STANDING_TARGET_S, PoolGate
from hita.deadline import WaitBudget, wait_budget
from hita.errors import DatabaseUnavailable, Overloaded


async def holding(gate: PoolGate) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """Its one slot held by a task until the event is set."""
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    return release, holder


async def test_a_free_slot_is_taken_without_waiting() -> None:
    gate = PoolGate(2, max_waiters=1, budget_s=0.05)
    async with gate.slot(), gate.slot():
        assert gate.in_use == 2
    assert gate.in_use == 0
    assert gate.stats.waits == 0


async def test_a_full_queue_is_refused_at_once_and_a_long_wait_after_its_budget() -> None:
    gate = PoolGate(1, max_waiters=1, budget_s=0.05)
    release, holder = await holding(gate)
    waiter = asyncio.create_task(gate.slot().__aenter__())
    await asyncio.sleep(0)
    assert gate.waiting == 1
    with pytest.raises(Overloaded) as full:
        async with gate.slot():
            pass
    assert full.value.reason == "database_queue_full"
    with pytest.raises(Overloaded) as late:
        await waiter
    assert late.value.reason == "database_wait_budget"
    assert not isinstance(late.value, DatabaseUnavailable)  # never "database unavailable"
    assert gate.stats.refused == {"queue_full": 1, "wait_budget": 1}
    assert gate.waiting == 0
    release.set()
    await holder
    async with gate.slot():  # nothing leaked: the slot is free again
        assert gate.in_use == 1


async def test_a_waiter_gets_the_slot_when_it_is_given_back_in_time() -> None:
    gate = PoolGate(1, max_waiters=4, budget_s=5.0)
    release, holder = await holding(gate)

    async def wait_for_slot() -> int:
        async with gate.slot():
            return gate.in_use

    waiter = asyncio.create_task(wait_for_slot())
    await asyncio.sleep(0)
    release.set()
    assert await waiter == 1
    await holder
    assert gate.stats.waits == 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def waiter_for(gate: PoolGate) -> asyncio.Task[None]:
    """A task waiting for a slot (it holds it once it has it, until cancelled)."""

    async def wait() -> None:
        async with gate.slot():
            await asyncio.Event().wait()

    task = asyncio.create_task(wait())
    await asyncio.sleep(0)
    return task


async def test_while_the_queue_stands_a_new_waiter_waits_only_briefly() -> None:
    """Every wait of the last interval took longer than STANDING_TARGET_S and
    the queue is not empty: a new waiter is refused after STANDING_WAIT_S,
    not after the whole budget."""
    clock = Clock()
    gate = PoolGate(1, max_waiters=4, budget_s=5.0, clock=clock)
    release, holder = await holding(gate)
    slow = await waiter_for(gate)  # it waits 200 ms by the gate's clock
    clock.now += STANDING_AFTER_S * 2
    release.set()
    await holder
    await asyncio.sleep(0)
    assert gate.least_wait_s == pytest.approx(STANDING_AFTER_S * 2)
    assert not gate.stands()  # the queue is empty
    first = await waiter_for(gate)  # so this one has the whole budget
    assert gate.stands()  # now a queue, after an interval of long waits
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Overloaded) as brief:
        async with gate.slot():  # joins a queue that stands
            pass
    assert brief.value.reason == "database_wait_budget"
    assert loop.time() - started < 1.0  # STANDING_WAIT_S, far from the 5 s budget
    assert gate.stats.standing_waits == 1  # it alone joined a standing queue
    assert not first.done()  # it joined an empty queue: its budget is its own
    clock.now += 0.01
    assert gate.refusing_s() == pytest.approx(0.01)  # it refused: the door may refuse too
    for task in (slow, first):
        task.cancel()
    await asyncio.gather(slow, first, return_exceptions=True)


async def test_a_queue_that_stays_occupied_but_drains_quickly_does_not_stand() -> None:
    """Waiters one after another for longer than the interval, each served in
    a few milliseconds: busy, not standing; every waiter has its whole budget
    and the door is not told to refuse."""
    clock = Clock()
    gate = PoolGate(1, max_waiters=4, budget_s=5.0, clock=clock)
    release, holder = await holding(gate)
    waiters = [await waiter_for(gate) for _ in range(3)]
    for task in [holder, *waiters[:-1]]:
        clock.now += 0.01  # each hold: 10 ms
        if task is holder:
            release.set()
            await holder
        else:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
        waiters.append(await waiter_for(gate))  # someone else joins: never empty
    clock.now += STANDING_AFTER_S * 3
    assert gate.standing_s() > STANDING_AFTER_S  # not empty for 300 ms and more
    assert gate.least_wait_s <= STANDING_TARGET_S
    assert not gate.stands()
    assert gate.refusing_s() == 0.0
    assert gate.stats.standing_waits == 0
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_a_request_waits_its_budget_once_in_all() -> None:
    """Within a request (``hita.deadline``), a wait is bounded by what is left
    of its budget and spends it; once spent, a wait is refused at once."""
    gate = PoolGate(1, max_waiters=4, budget_s=5.0)
    release, holder = await holding(gate)
    budget = WaitBudget(0.05)
    token = wait_budget.set(budget)
    try:
        with pytest.raises(Overloaded):
            async with gate.slot():  # waits 50 ms, not 5 s
                pass
        assert budget.left_s <= 0.001
        with pytest.raises(Overloaded):
            async with gate.slot():  # the budget is spent: refused at once
                pass
    finally:
        wait_budget.reset(token)
    assert gate.stats.refused["wait_budget"] == 2
    release.set()
    await holder


async def test_time_a_request_spends_outside_the_queue_leaves_its_budget_whole() -> None:
    """A request that spent longer than its budget elsewhere (a Redis timeout,
    say) still waits for a connection: only queue waits spend the budget."""
    gate = PoolGate(1, max_waiters=4, budget_s=5.0)
    release, holder = await holding(gate)
    budget = WaitBudget(0.5)
    token = wait_budget.set(budget)
    try:
        await asyncio.sleep(0.6)  # the request's time elsewhere, past its budget
        asyncio.get_running_loop().call_later(0.05, release.set)
        async with gate.slot():
            assert gate.in_use == 1
    finally:
        wait_budget.reset(token)
    assert 0.0 < budget.left_s < 0.5  # the wait spent part of it
    await holder


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 0.2), st.floats(0.0, 0.3)),  # (time passing, a wait seen)
        max_size=60,
    )
)
def test_the_standing_delay_is_the_least_wait_of_the_last_complete_interval(
    observed: list[tuple[float, float]],
) -> None:
    """Against a model: windows start at the gate's birth and at each close;
    a window closes at the first wait seen ``STANDING_AFTER_S`` or more after
    it started, and the least wait seen in it (that one included) becomes the
    standing delay."""
    clock = Clock()
    gate = PoolGate(1, max_waiters=4, budget_s=1.0, clock=clock)
    window_start, window = clock.now, float("inf")
    expected = 0.0
    for passing, waited in observed:
        clock.now += passing
        gate._observe_wait(waited, clock.now)
        window = min(window, waited)
        if clock.now - window_start >= STANDING_AFTER_S:
            expected, window_start, window = window, clock.now, float("inf")
        assert gate.least_wait_s == expected
        assert not gate.stands()  # nobody waits now: nobody joins a standing queue
        gate.waiting = 1
        assert gate.stands() is (expected > STANDING_TARGET_S)
        gate.waiting = 0
