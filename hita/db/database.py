"""The asyncpg pool behind one boundary that turns driver errors into ours.

Connection-level failures (refused, reset, server shutting down, timeouts)
become ``DatabaseUnavailable`` here and nowhere else; query errors such as a
unique violation pass through for the repositories to interpret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import asyncpg

from hita.config import ConfigError, DatabaseConfig
from hita.db.gate import PoolGate
from hita.db.migrate import apply_migrations
from hita.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

POOL_CLOSE_TIMEOUT_S = 10.0
# How long a COMMIT whose answer was lost waits to learn whether it committed
# (through a lost path, until it is back): not knowing, it never says it failed.
COMMIT_OUTCOME_WAIT_S = 15.0
COMMIT_OUTCOME_POLL_S = 0.05

# The ids of the transactions this task (an HTTP request) committed, for
# whoever started collecting them (``collect_committed``).
_COMMITTED: ContextVar[list[str] | None] = ContextVar("hita_committed_xids", default=None)


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    log.warning("database unavailable: %s", exc.__class__.__name__)
    return DatabaseUnavailable(retryable=isinstance(exc, LOST_ERRORS))


def collect_committed() -> list[str]:
    """Start collecting the ids of the transactions this task commits from now on."""
    xids: list[str] = []
    _COMMITTED.set(xids)
    return xids


def note_committed(xid: str) -> None:
    """A statement run outside ``Database.transaction`` committed as ``xid``."""
    xids = _COMMITTED.get()
    if xids is not None:
        xids.append(xid)


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
    asyncpg.exceptions.InterfaceError,  # the connection was closed under us
    # A pooled connection whose server went away mid-protocol ("cannot switch to
    # state ..."); the pool drops it when it fails to reset on release.
    asyncpg.exceptions.InternalClientError,
)


# The connection was lost (terminated, reset, closed) before or while a
# statement ran: no timeout, so PostgreSQL itself may well be up. A statement
# or transaction lost this way before its commit may be run again.
LOST_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08
    asyncpg.exceptions.AdminShutdownError,  # 57P01: pg_terminate_backend, a fast shutdown
    asyncpg.exceptions.InterfaceError,  # the connection was closed under us
    asyncpg.exceptions.InternalClientError,  # a pooled connection whose server went away
)
# PostgreSQL rolled the whole transaction back: it may simply run again.
ROLLED_BACK_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,  # 40P01
    asyncpg.exceptions.SerializationError,  # 40001
)
RUN_ATTEMPTS: Final = 3  # a unit of work lost with its connection runs again, twice at most
# Before each new run: time for the loop to hear of every other connection that
# broke too, then for a storm of reconnections (every session terminated) to pass.
RUN_PAUSES_S: Final = (0.01, 0.1)


class Queryable(Protocol):
    """What repositories run their SQL on: the ``Database`` itself, or the
    connection of a transaction it opened."""

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> str: ...


def describe_dsn(dsn: str) -> str:
    """Where a DSN points, without its password."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if not host:
        for item in parts.query.split("&"):
            if item.startswith("host="):
                host = item.removeprefix("host=")
    port = f":{parts.port}" if parts.port else ""
    return f"{host or 'localhost'}{port}{parts.path}"


class Database:
    def __init__(
        self, pool: asyncpg.Pool, acquire_timeout_s: float, gate: PoolGate | None = None
    ) -> None:
        self._pool = pool
        self._acquire_timeout_s = acquire_timeout_s
        self.gate = gate

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection. Behind the gate (the service), a wait past its
        budget raises ``Overloaded``; a connection that cannot be had once a slot
        is ours means PostgreSQL is not answering: ``DatabaseUnavailable``."""
        slot: AbstractAsyncContextManager[None] = self.gate.slot() if self.gate else nullcontext()
        async with slot:
            try:
                conn = await self._pool.acquire(timeout=self._acquire_timeout_s)
            except UNAVAILABLE_ERRORS as exc:
                raise _unavailable(exc) from exc
            try:
                yield conn
            except UNAVAILABLE_ERRORS as exc:
                raise _unavailable(exc) from exc
            finally:
                # A connection that broke under its last statement fails its reset
                # here: the pool drops it. That must not replace what the work
                # ended with (a commit already confirmed, say).
                try:
                    await self._pool.release(conn)
                except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
                    log.debug("a broken connection was dropped on release")

    @asynccontextmanager
    async def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside one transaction; errors on it are translated too.

        A transaction that wrote is committed knowing its id: if the connection
        fails during COMMIT, whether it committed is asked of PostgreSQL
        (``pg_xact_status``) instead of guessed, so a committed change is never
        reported as failed. Its id is added to what ``collect_committed`` collects."""
        async with self.connection() as conn:
            transaction = conn.transaction(isolation=isolation, readonly=readonly)
            await transaction.start()
            try:
                yield conn
                xid = None
                if not readonly:
                    xid = await conn.fetchval("SELECT pg_current_xact_id_if_assigned()::text")
            except BaseException:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            try:
                await transaction.commit()
            except UNAVAILABLE_ERRORS as exc:
                if xid is None:  # it wrote nothing
                    raise
                committed = await self._committed(xid)
                if committed is None:
                    raise DatabaseUnavailable(retryable=False) from exc
                if not committed:
                    raise DatabaseUnavailable(retryable=True) from exc
                log.warning("the connection failed during COMMIT; PostgreSQL says it committed")
            if xid is not None:
                note_committed(xid)

    async def _committed(self, xid: str) -> bool | None:
        """Did transaction ``xid`` commit? Asked on another connection for up to
        ``COMMIT_OUTCOME_WAIT_S``; None when PostgreSQL cannot say (then the
        change is reported as failed, and not run again: the outbox still
        applies it if it did commit)."""
        deadline = time.monotonic() + COMMIT_OUTCOME_WAIT_S
        while time.monotonic() < deadline:
            status = None
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    status = await self._pool.fetchval("SELECT pg_xact_status($1::text::xid8)", xid)
            except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError):
                pass
            if status in ("committed", "aborted"):
                return bool(status == "committed")
            await asyncio.sleep(COMMIT_OUTCOME_POLL_S)
        log.error("a transaction's outcome is unknown: PostgreSQL could not be asked")
        return None

    async def atomic(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        isolation: str | None = None,
        readonly: bool = False,
    ) -> T:
        """``work(conn)`` in one transaction, run again (twice at most) if its
        connection was lost before it committed (a terminated session, a
        reset), or PostgreSQL rolled it back as a deadlock's victim or a
        serialization failure: nothing of such a run stayed, so the last is
        the only one."""

        async def once() -> T:
            async with self.transaction(isolation=isolation, readonly=readonly) as conn:
                return await work(conn)

        return await _run_again_if_undone(once)

    async def statement(self, run: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """One statement on a pooled connection, run once more if the connection
        was lost under it (a statement that writes must tolerate that) or it was
        rolled back (a deadlock's victim)."""

        async def once() -> T:
            async with self.connection() as conn:
                return await run(conn)

        return await _run_again_if_undone(once)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.statement(lambda conn: conn.fetch(sql, *args))
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.statement(lambda conn: conn.fetchrow(sql, *args))
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.statement(lambda conn: conn.fetchval(sql, *args))

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await self.statement(lambda conn: conn.execute(sql, *args))
        return status

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        async with self.connection() as conn:
            await conn.executemany(sql, args)

    async def ping(self, timeout_s: float = 1.0) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await self.fetchval("SELECT 1"))
        except (DatabaseUnavailable, TimeoutError):
            return False


async def close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("PostgreSQL pool did not close in time; terminating it")
        pool.terminate()


@asynccontextmanager
async def open_database(config: DatabaseConfig) -> AsyncIterator[Database]:
    """The pool for a command-line run: opened, migrated if configured, closed."""
    pool = await create_pool(config)
    try:
        database = Database(pool, config.acquire_timeout_s)
        if config.auto_migrate:
            async with database.connection() as conn:
                await apply_migrations(conn)
        yield database
    finally:
        await close_pool(pool)


async def create_pool(config: DatabaseConfig) -> asyncpg.Pool:
    """Open the pool with a few logged attempts, then fail with one clear line."""
    if config.url is None:
        raise DatabaseUnavailable("DATABASE_URL is not set")
    where = describe_dsn(config.url)
    last: BaseException | None = None
    for attempt in range(1, config.startup_attempts + 1):
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                config.url,
                min_size=config.pool_min_size,
                max_size=config.pool_max_size,
                timeout=config.connect_timeout_s,
                command_timeout=config.command_timeout_s,
                # 0 behind a transaction pooler: no named statement to lose
                statement_cache_size=config.statement_cache_size,
            )
        except (asyncpg.exceptions.ClientConfigurationError, ValueError) as exc:
            # a DSN asyncpg cannot use: no retry will change that
            raise ConfigError(f"DATABASE_URL cannot be used: {exc}") from None
        except (
            *UNAVAILABLE_ERRORS,
            asyncpg.exceptions.InvalidCatalogNameError,
            asyncpg.exceptions.InvalidAuthorizationSpecificationError,
        ) as exc:
            last = exc
            log.warning(
                "PostgreSQL at %s: attempt %d/%d failed: %s",
                where,
                attempt,
                config.startup_attempts,
                exc or exc.__class__.__name__,
            )
            if attempt < config.startup_attempts:
                await asyncio.sleep(0.2 * 2**attempt)
        else:
            log.info("PostgreSQL pool open at %s", where)
            return pool
    reason = str(last) or last.__class__.__name__
    raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {where}: {reason}") from last


async def _run_again_if_undone(once: Callable[[], Awaitable[T]]) -> T:
    """``once()``, run again (twice at most) when nothing of it can have stayed:
    its connection was lost before it committed, or PostgreSQL rolled it back."""
    for attempt in range(1, RUN_ATTEMPTS + 1):
        try:
            return await once()
        except DatabaseUnavailable as exc:
            if not exc.retryable or attempt == RUN_ATTEMPTS:
                raise
            log.info("a unit of work lost its connection before committing; running it again")
        except ROLLED_BACK_ERRORS as exc:
            if attempt == RUN_ATTEMPTS:
                raise
            log.info("PostgreSQL rolled a unit of work back (%s); running it again", exc)
        await asyncio.sleep(RUN_PAUSES_S[attempt - 1])
    raise AssertionError("unreachable")
