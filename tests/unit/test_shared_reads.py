"""``SharedReads``: reads that would wait for a connection share one query, and
none comes back older than a write acknowledged before it was asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hita.db.database import Database
from hita.db.gate import PoolGate
from hita.db.shared_reads import SharedReads
from hita.deadline import WaitBudget, wait_budget
from hita.errors import DatabaseUnavailable, Overloaded


@dataclass
class Table:
    """Rows with a version each; a query sees the rows as they are when it is
    sent and answers ``latency`` later (a write may commit meanwhile)."""

    versions: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0
    singles: list[str] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    fail: BaseException | None = None

    async def one(self, key: str) -> int | None:
        self.singles.append(key)
        seen = self.versions.get(key)
        await asyncio.sleep(self.latency_s)
        return seen

    async def many(self, keys: list[str]) -> Mapping[str, int]:
        self.batches.append(sorted(keys))
        if self.fail is not None:
            raise self.fail
        seen = {key: self.versions[key] for key in keys if key in self.versions}
        await asyncio.sleep(self.latency_s)
        return seen


class FakeDatabase:
    """What ``SharedReads`` uses of ``Database``: its gate and ``statement``."""

    def __init__(self, gate: PoolGate | None) -> None:
        self.gate = gate

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self.gate is None:
            yield
            return
        async with self.gate.slot():
            yield

    async def statement(self, run: Callable[[Any], Awaitable[Any]]) -> Any:
        async with self._slot():
            return await run(None)


def reads_of(table: Table, gate: PoolGate | None, **options: Any) -> SharedReads[str, int]:
    return SharedReads(
        cast(Database, FakeDatabase(gate)),
        fetch_one=lambda _db: table.one,
        fetch_many=lambda _db: table.many,
        **options,
    )


async def holding(gate: PoolGate) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """Every slot of the gate held by a task until the event is set."""
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(gate.slots)]
    await asyncio.sleep(0)
    return release, asyncio.create_task(asyncio.wait(holders))  # type: ignore[arg-type]


async def test_a_read_while_a_connection_is_free_is_its_own_query() -> None:
    table = Table({"a": 1})
    reads = reads_of(table, PoolGate(2, max_waiters=8, budget_s=1.0))
    assert await reads.get("a") == 1
    assert await reads.get("b") is None
    assert table.singles == ["a", "b"]
    assert table.batches == []


async def test_without_a_gate_every_read_is_its_own_query() -> None:
    table = Table({"a": 1})
    reads = reads_of(table, None)
    assert list(await asyncio.gather(reads.get("a"), reads.get("a"))) == [1, 1]
    assert table.singles == ["a", "a"]


async def test_reads_that_wait_for_a_connection_share_one_query() -> None:
    table = Table({f"u{i}": i for i in range(30)})
    gate = PoolGate(2, max_waiters=8, budget_s=1.0)
    reads = reads_of(table, gate)
    release, holders = await holding(gate)
    keys = [f"u{i}" for i in range(30)] + ["u3", "absent"]
    waiting = [asyncio.create_task(reads.get(key)) for key in keys]
    await asyncio.sleep(0.01)
    assert gate.waiting == 1  # one waiter in the queue, for all 32 reads
    release.set()
    await holders
    assert await asyncio.gather(*waiting) == [*range(30), 3, None]
    assert table.batches == [sorted({*keys})]
    assert table.singles == []
    assert gate.stats.shared_reads == len(keys)


async def test_a_read_after_the_query_was_sent_opens_the_next_batch() -> None:
    table = Table({"a": 1}, latency_s=0.05)
    gate = PoolGate(1, max_waiters=8, budget_s=1.0)
    reads = reads_of(table, gate)
    release, holders = await holding(gate)
    first = asyncio.create_task(reads.get("a"))
    await asyncio.sleep(0)
    release.set()
    await holders
    await asyncio.sleep(0.01)  # the first batch's query is on its way, with version 1
    table.versions["a"] = 2  # a write commits and is acknowledged
    second = asyncio.create_task(reads.get("a"))
    assert await first == 1
    assert await second == 2  # not the answer of the query already sent
    assert table.batches == [["a"], ["a"]]


async def test_a_failed_query_fails_every_read_of_its_batch() -> None:
    table = Table({"a": 1}, fail=DatabaseUnavailable())
    gate = PoolGate(1, max_waiters=8, budget_s=1.0)
    reads = reads_of(table, gate)
    release, holders = await holding(gate)
    waiting = [asyncio.create_task(reads.get(key)) for key in ("a", "b")]
    await asyncio.sleep(0)
    release.set()
    await holders
    for outcome in await asyncio.gather(*waiting, return_exceptions=True):
        assert isinstance(outcome, DatabaseUnavailable)
    table.fail = None
    assert await reads.get("a") == 1  # nothing left open


async def test_a_read_waits_no_longer_than_its_budget_and_spends_only_the_wait() -> None:
    table = Table({"a": 1, "b": 2}, latency_s=0.05)
    gate = PoolGate(1, max_waiters=8, budget_s=1.0)
    reads = reads_of(table, gate)
    release, holders = await holding(gate)

    async def read(key: str, budget: WaitBudget) -> int | None:
        wait_budget.set(budget)
        return await reads.get(key)

    short, long = WaitBudget(0.02), WaitBudget(1.0)
    hurried = asyncio.create_task(read("a", short))
    patient = asyncio.create_task(read("b", long))
    with pytest.raises(Overloaded) as refused:
        await hurried
    assert refused.value.reason == "database_wait_budget"
    assert gate.stats.refused["wait_budget"] == 1
    assert short.left_s <= 0
    release.set()
    await holders
    assert await patient == 2  # the batch went on for the other read
    # it waited for the connection (about 20 ms), not for the query (50 ms more)
    assert 1.0 - long.left_s < 0.045


async def test_a_batch_refused_by_a_full_queue_refuses_each_reader_once() -> None:
    gate = PoolGate(1, max_waiters=1, budget_s=1.0)
    reads = reads_of(Table({"a": 1}), gate)
    release, holders = await holding(gate)
    queued = asyncio.create_task(gate.slot().__aenter__())  # the queue's one place taken
    await asyncio.sleep(0)
    outcomes = await asyncio.gather(*(reads.get(key) for key in "abc"), return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, Overloaded)
        assert outcome.reason == "database_queue_full"
    assert gate.stats.refused == {"queue_full": 3, "wait_budget": 0}  # one a reader
    release.set()
    await holders
    await queued


async def test_an_exhausted_budget_is_refused_without_waiting() -> None:
    gate = PoolGate(1, max_waiters=8, budget_s=1.0)
    reads = reads_of(Table({"a": 1}), gate)
    release, holders = await holding(gate)
    wait_budget.set(WaitBudget(0.0))
    with pytest.raises(Overloaded):
        await reads.get("a")
    release.set()
    await holders


async def test_a_full_batch_opens_the_next() -> None:
    table = Table({f"u{i}": i for i in range(5)})
    gate = PoolGate(1, max_waiters=8, budget_s=1.0)
    reads = reads_of(table, gate, max_batch=2)
    release, holders = await holding(gate)
    waiting = [asyncio.create_task(reads.get(f"u{i}")) for i in range(5)]
    await asyncio.sleep(0)
    release.set()
    await holders
    assert await asyncio.gather(*waiting) == list(range(5))
    assert table.batches == [["u0", "u1"], ["u2", "u3"], ["u4"]]


# -- the freshness property over random histories ------------------------------

TICK_S = 0.002  # a step's delay and a statement's time are counted in ticks
RACE_TICK_S = 0.05  # long enough that a late loop cannot reorder the race's steps


@dataclass(frozen=True)
class Step:
    kind: str  # "read", "write" or "pause" (another statement holding a connection)
    key: str
    delay: float  # ticks after the start


STEPS = st.lists(
    st.builds(
        Step,
        st.sampled_from(["read", "read", "write", "pause"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(min_value=0, max_value=8).map(float),
    ),
    min_size=5,
    max_size=40,
)


async def history(steps: list[Step], slots: int, tick_s: float = TICK_S) -> list[str]:
    """Run the steps at once, each after its delay: every read whose answer is
    older than a write acknowledged before the read was asked. A query takes
    two ticks, a write one: a write can commit and be acknowledged while a
    query sent before it is still out."""
    table = Table({"a": 0, "b": 0, "c": 0}, latency_s=2 * tick_s)
    gate = PoolGate(slots, max_waiters=64, budget_s=10.0)
    reads = reads_of(table, gate)
    acknowledged = {"a": 0, "b": 0, "c": 0}
    stale: list[str] = []

    async def run(step: Step) -> None:
        await asyncio.sleep(step.delay * tick_s)
        if step.kind == "pause":
            async with gate.slot():
                await asyncio.sleep(2 * tick_s)
        elif step.kind == "write":
            async with gate.slot():
                table.versions[step.key] += 1
                version = table.versions[step.key]
                await asyncio.sleep(tick_s)  # acknowledged a tick after it committed
            acknowledged[step.key] = max(acknowledged[step.key], version)
        else:
            floor = acknowledged[step.key]
            seen = await reads.get(step.key)
            if seen is None or seen < floor:
                stale.append(f"read {step.key}: {seen} after version {floor} was acknowledged")

    await asyncio.gather(*(run(step) for step in steps))
    return stale


@settings(max_examples=60, deadline=None)
@given(STEPS, st.integers(min_value=1, max_value=3))
def test_no_read_is_older_than_a_write_acknowledged_before_it(
    steps: list[Step], slots: int
) -> None:
    assert asyncio.run(history(steps, slots)) == []


# Both connections busy until tick 2; a read at 0 opens a batch, whose query
# goes out at tick 2 and answers at 4; a write waits from tick 1, commits at 2
# on the other connection and is acknowledged at 3; a read is asked at 3.5.
RACE = [
    Step("pause", "x", 0),
    Step("pause", "y", 0),
    Step("read", "a", 0),
    Step("write", "a", 1),
    Step("read", "a", 3.5),
]


def test_a_read_asked_after_a_write_acknowledged_mid_query_is_fresh() -> None:
    assert asyncio.run(history(RACE, 2, RACE_TICK_S)) == []


def test_the_checker_catches_reads_joining_a_query_already_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect back: a batch left open once its query was sent (a single
    flight) answers the read asked at 3.5 with the row from before the write."""

    def stays_open(self: SharedReads[str, int], batch: Any) -> None:
        batch.sent_at = self._clock()

    monkeypatch.setattr(SharedReads, "_sent", stays_open)
    stale = asyncio.run(history(RACE, 2, RACE_TICK_S))
    assert stale == ["read a: 0 after version 1 was acknowledged"]
