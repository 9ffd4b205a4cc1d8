"""A unit of work whose connection is lost before it commits runs again, and
a COMMIT whose answer is lost is asked about: a terminated session is never a
5xx while PostgreSQL is up, and a committed change is never reported failed.
Each with a control that brings the defect back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from hita.config import load_config
from hita.db import database as database_module
from hita.db.database import Database, close_pool, collect_committed, create_pool
from hita.errors import DatabaseUnavailable


@pytest.fixture
async def db(clean_database: str) -> AsyncIterator[Database]:
    config = load_config({"HITA_ENV": "test", "DATABASE_URL": clean_database}).database
    pool = await create_pool(config)
    await pool.execute("CREATE TABLE IF NOT EXISTS retry_probe (n int)")
    await pool.execute("TRUNCATE retry_probe")
    yield Database(pool, config.acquire_timeout_s)
    await pool.execute("DROP TABLE retry_probe")
    await close_pool(pool)


async def terminated_once(db: Database) -> tuple[int, int]:
    """A transaction whose first run loses its session (terminated by the
    server) halfway: its result, and the rows committed in the end."""
    runs = 0

    async def work(conn: asyncpg.Connection) -> int:
        nonlocal runs
        runs += 1
        await conn.execute("INSERT INTO retry_probe VALUES ($1)", runs)
        if runs == 1:
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return runs

    result = await db.atomic(work)
    return result, int(await db.fetchval("SELECT count(*) FROM retry_probe"))


async def test_a_transaction_that_loses_its_session_runs_once_more(db: Database) -> None:
    assert await terminated_once(db) == (2, 1)  # the first run left nothing


async def test_control_without_the_second_run_it_is_a_database_error(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "RUN_ATTEMPTS", 1)
    with pytest.raises(DatabaseUnavailable):
        await terminated_once(db)


async def test_a_statement_on_a_terminated_pooled_connection_runs_once_more(
    db: Database, clean_database: str
) -> None:
    async with db.connection() as conn:
        pid = conn.get_server_pid()
    other = await asyncpg.connect(clean_database)
    try:
        await other.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await other.close()
    assert await db.fetchval("SELECT 41 + 1") == 42


def lose_the_commits_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """COMMIT reaches the server and commits, but its answer never arrives."""
    real = asyncpg.transaction.Transaction.commit

    async def commit_then_lose(self: Any) -> None:
        await real(self)
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost")

    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", commit_then_lose)


async def test_a_commit_whose_answer_was_lost_is_asked_about_and_stands(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_the_commits_answer(monkeypatch)
    committed = collect_committed()

    async def work(conn: asyncpg.Connection) -> str:
        await conn.execute("INSERT INTO retry_probe VALUES (1)")
        return "done"

    assert await db.atomic(work) == "done"
    monkeypatch.undo()
    assert await db.fetchval("SELECT count(*) FROM retry_probe") == 1  # once, not twice
    assert len(committed) == 1


async def test_control_a_commit_taken_for_failed_is_a_5xx_for_a_committed_change(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_the_commits_answer(monkeypatch)

    async def cannot_say(self: Database, xid: str) -> bool | None:
        return None

    monkeypatch.setattr(Database, "_committed", cannot_say)

    async def work(conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO retry_probe VALUES (1)")

    with pytest.raises(DatabaseUnavailable):
        await db.atomic(work)
    monkeypatch.undo()
    assert await db.fetchval("SELECT count(*) FROM retry_probe") == 1  # it did commit


async def crossing_transactions(db: Database) -> tuple[list[Any], list[int]]:
    """Two units of work that lock rows 1 and 2 in crossing orders, each
    waiting for the other's first lock: PostgreSQL aborts one as a deadlock's
    victim. What each returned (or raised), and how often each ran."""
    await db.execute("INSERT INTO retry_probe VALUES (1), (2)")
    first_locks = [asyncio.Event(), asyncio.Event()]
    runs = [0, 0]

    def unit(me: int) -> Any:
        first, second = (1, 2) if me == 0 else (2, 1)

        async def work(conn: asyncpg.Connection) -> int:
            runs[me] += 1
            await conn.execute("SET LOCAL deadlock_timeout = '50ms'")
            await conn.execute("UPDATE retry_probe SET n = n WHERE n = $1", first)
            first_locks[me].set()
            await first_locks[1 - me].wait()
            await conn.execute("UPDATE retry_probe SET n = n WHERE n = $1", second)
            return me

        return work

    results = await asyncio.gather(db.atomic(unit(0)), db.atomic(unit(1)), return_exceptions=True)
    return list(results), runs


async def test_a_deadlocks_victim_runs_again(db: Database) -> None:
    results, runs = await crossing_transactions(db)
    assert results == [0, 1]
    assert sorted(runs) == [1, 2]  # the victim ran again once the other had committed


async def test_control_without_running_it_again_the_victim_fails(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "ROLLED_BACK_ERRORS", ())
    results, runs = await crossing_transactions(db)
    assert sum(isinstance(r, asyncpg.DeadlockDetectedError) for r in results) == 1
    assert runs == [1, 1]
