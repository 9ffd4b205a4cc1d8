"""A statement that stops while it holds rows of the outbox or of the readers'
table (its backend SIGSTOPped mid-renewal, as ``make chaos``'s ``listen_stop``
does) must hold nobody else up. An acknowledgement only saves other readers
work, so one skips the rows another transaction holds, whoever sends it (a
renewal, a writer's batch, the compaction). This instance's own row is locked
NOWAIT: a renewal behind a stuck one of ours fails at once, rather than
outliving its client's timeout on the server and piling up, one backend more
each timeout, until PostgreSQL's connection slots run out.

The stopped statement is played by an open transaction that took the same
row locks and does nothing more (``hold``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from hita.db.database import Database
from hita.db.outbox import APPLICATION_NAME, Ack, Outbox, ReaderSession
from hita.errors import DatabaseUnavailable

pytestmark = pytest.mark.slow

TIMEOUT_S = 0.5  # the reader session's per-statement budget in these tests
AT_ONCE_S = 0.25  # an answer that did not wait for the held rows
INSTANCE = "outbox-locks-test"


async def _no_probe(_payload: str) -> None:
    return None


@pytest.fixture
async def session(clean_database: str) -> AsyncIterator[ReaderSession]:
    reader = ReaderSession(
        clean_database,
        INSTANCE,
        connect_timeout_s=5.0,
        timeout_s=TIMEOUT_S,
        on_hint=lambda _hurry: None,
        probe_send=_no_probe,
    )
    await reader.connect()
    yield reader
    await reader.close()


@pytest.fixture
async def outbox(clean_database: str) -> AsyncIterator[Outbox]:
    pool = await asyncpg.create_pool(clean_database, min_size=1, max_size=2)
    yield Outbox(Database(pool, acquire_timeout_s=5.0))
    await pool.close()


@asynccontextmanager
async def hold(dsn: str, sql: str, *args: Any) -> AsyncIterator[None]:
    """A transaction that ran ``sql`` (taking its row locks) and stops there."""
    conn = await asyncpg.connect(dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(sql, *args)
        yield
        await transaction.rollback()
    finally:
        await conn.close()


async def outbox_rows(dsn: str, user_ids: list[str]) -> list[tuple[int, str]]:
    """One unacknowledged row per user, each its own transaction: (id, xid)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = []
        for user_id in user_ids:
            row = await conn.fetchrow(
                "INSERT INTO cache_outbox (user_ids, scope) VALUES (ARRAY[$1], 'details')"
                " RETURNING id, xid::text",
                user_id,
            )
            assert row is not None
            rows.append((int(row["id"]), str(row["xid"])))
        return rows
    finally:
        await conn.close()


async def unacked(dsn: str) -> set[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id FROM cache_outbox WHERE acked_at IS NULL")
        return {int(r["id"]) for r in rows}
    finally:
        await conn.close()


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    """``call``'s result and how long it took, failing the test past 5 s (a
    statement that waits for the held rows would wait as long as they are)."""
    started = time.monotonic()
    async with asyncio.timeout(5.0):
        result = await call()
    return result, time.monotonic() - started


HELD_ACK = "UPDATE cache_outbox SET acked_at = now() WHERE id = $1"


async def test_a_renewal_acknowledges_around_rows_a_stuck_statement_holds(
    session: ReaderSession, clean_database: str
) -> None:
    (held, _), (free, _) = await outbox_rows(clean_database, ["u-held", "u-free"])
    async with hold(clean_database, HELD_ACK, held):
        renewal, took = await timed(lambda: session.renew(1.5, None, [held, free]))
        assert took < AT_ONCE_S, f"the renewal waited {took:.3f} s for the held row"
        assert {held, free} <= {c.id for c in renewal.changes}
        assert await unacked(clean_database) & {held, free} == {held}  # left to its holder
    assert await unacked(clean_database) & {held, free} == {held}  # who never committed


async def test_a_writers_acknowledgement_and_the_compaction_skip_held_rows(
    outbox: Outbox, clean_database: str
) -> None:
    (held, held_xid), (free, free_xid), (other, _) = await outbox_rows(
        clean_database, ["u-held", "u-free", "u-other"]
    )
    acks = [Ack(held_xid, "u-held", True), Ack(free_xid, "u-free", True)]
    async with hold(clean_database, HELD_ACK, held):
        count, took = await timed(lambda: outbox.acknowledge(acks))
        assert (count, took < AT_ONCE_S) == (1, True), f"{count} acknowledged in {took:.3f} s"
        compacted, took = await timed(lambda: outbox.compact(0))
        assert (compacted, took < AT_ONCE_S) == (True, True), f"compacted in {took:.3f} s"
    left = await unacked(clean_database)
    assert held in left
    assert not left & {free, other}
    assert len(left) == 2  # the held row, and the one that says every user changed


async def lock_waiters(dsn: str) -> int:
    """Backends of reader sessions waiting for a lock."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND wait_event_type = 'Lock'",
                APPLICATION_NAME,
            )
        )
    finally:
        await conn.close()


async def test_renewals_behind_a_stuck_one_of_ours_fail_at_once_and_leave_no_waiter(
    session: ReaderSession, clean_database: str
) -> None:
    await session.renew(1.5, None, [])  # our row exists
    held_row = "UPDATE cache_readers SET renewed_at = now() WHERE instance = $1"
    async with hold(clean_database, held_row, INSTANCE):
        for _ in range(3):  # the owner reconnects after each failure
            await session.connect()
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                await session.renew(1.5, None, [])
            took = time.monotonic() - started
            assert took < AT_ONCE_S, f"the renewal waited {took:.3f} s for our held row"
        await asyncio.sleep(0.1)  # a backend whose client left exits
        assert await lock_waiters(clean_database) == 0
    await session.connect()
    renewal = await session.renew(1.5, None, [])
    assert renewal.snapshot
