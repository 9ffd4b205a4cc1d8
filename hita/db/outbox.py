"""The outbox of cache invalidations, and the channel that announces them.

Triggers (migration 0005) write a row to ``cache_outbox`` in the transaction
of every change to users or permissions, and ``NOTIFY hita_cache`` with what
changed; PostgreSQL delivers the notification on commit, to every listener,
in commit order. This module knows PostgreSQL and nothing of Redis:

* ``OutboxListener`` holds one dedicated connection that LISTENs, reconnects
  on its own, and tells its owner when it is deaf (lost) and when it hears
  again; it also answers ``barrier()``: a notification of our own whose
  return proves that every change committed before it has been handed to
  every listener.
* ``Outbox`` reads what is pending and sweeps it: rows are taken with
  ``FOR UPDATE SKIP LOCKED`` (so instances share the work), applied by the
  caller, and deleted in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import orjson

from hita.constants import OUTBOX_CHANNEL
from hita.db.database import UNAVAILABLE_ERRORS, Database
from hita.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

RECONNECT_FIRST_S: Final = 0.1
RECONNECT_MAX_S: Final = 2.0
KEEPALIVE_S: Final = 1.0  # how often the listening connection is checked
KEEPALIVE_TIMEOUT_S: Final = 2.0
SWEEP_BATCH: Final = 1_000  # rows per sweep transaction
PENDING_READ_LIMIT: Final = 10_000  # past this, "everything changed"


@dataclass(frozen=True, slots=True)
class Change:
    """What one committed statement changed: some users (None: every user),
    and whether only their details ('details') or everything shown of them ('all')."""

    user_ids: tuple[str, ...] | None
    scope: str

    @property
    def details_only(self) -> bool:
        return self.scope == "details"


EVERYTHING: Final = Change(None, "all")


def parse_change(payload: str) -> Change | str:
    """A change, or a barrier's token."""
    data = orjson.loads(payload)
    if "b" in data:
        return str(data["b"])
    ids = data.get("u")
    return Change(None if ids is None else tuple(str(i) for i in ids), str(data.get("s", "all")))


OnChange = Callable[[Change], None]
OnEvent = Callable[[], Awaitable[None]]


class OutboxListener:
    def __init__(
        self,
        dsn: str,
        *,
        on_change: OnChange,
        on_deaf: Callable[[], None],
        on_listening: OnEvent,
        connect_timeout_s: float,
    ) -> None:
        self._dsn = dsn
        self._on_change = on_change
        self._on_deaf = on_deaf
        self._on_listening = on_listening
        self._connect_timeout_s = connect_timeout_s
        self._barriers: dict[str, asyncio.Future[None]] = {}
        self._lost = asyncio.Event()
        self.listening = False
        self.connections = 0  # how many times a listening connection was opened

    async def run_forever(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout_s)
                self._lost.clear()
                conn.add_termination_listener(lambda _conn: self._lost.set())
                await conn.add_listener(OUTBOX_CHANNEL, self._notified)
                self.connections += 1
                await self._on_listening()
                self.listening = True
                delay = RECONNECT_FIRST_S
                log.info("listening for cache invalidations")
                await self._keepalive(conn)
            except asyncio.CancelledError:
                raise
            except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("invalidation channel unavailable: %s", exc.__class__.__name__)
            except Exception:
                log.exception("invalidation channel failed")
            finally:
                self._deafen()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _keepalive(self, conn: asyncpg.Connection) -> None:
        """Return when the connection is lost: terminated, or not answering."""
        while not self._lost.is_set():
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    await self._lost.wait()
                return
            except TimeoutError:
                pass
            async with asyncio.timeout(KEEPALIVE_TIMEOUT_S):
                await conn.execute("SELECT 1")

    def _deafen(self) -> None:
        was = self.listening
        self.listening = False
        for future in self._barriers.values():
            if not future.done():
                future.set_exception(ConnectionError("invalidation channel lost"))
        self._barriers.clear()
        if was:
            log.warning("invalidation channel lost: distrusting the cache until it is back")
        self._on_deaf()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            change = parse_change(payload)
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            log.error("unreadable invalidation notification; treating it as 'everything'")
            change = EVERYTHING
        if isinstance(change, str):
            future = self._barriers.pop(change, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        self._on_change(change)

    async def barrier(self, database: Database, timeout_s: float) -> bool:
        """True once a notification sent now has come back to us: every change
        committed before this call has then been handed to every listener."""
        if not self.listening:
            return False
        token = secrets.token_hex(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers[token] = future
        try:
            async with asyncio.timeout(timeout_s):
                await database.execute(
                    "SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, orjson.dumps({"b": token}).decode()
                )
                await future
            return True
        except (TimeoutError, ConnectionError, DatabaseUnavailable):
            return False
        finally:
            self._barriers.pop(token, None)


class Outbox:
    """The ``cache_outbox`` table."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def pending(self) -> list[Change]:
        """Every change not yet swept (``EVERYTHING`` when there are too many)."""
        rows = await self._db.fetch(
            "SELECT user_ids, scope FROM cache_outbox ORDER BY id LIMIT $1",
            PENDING_READ_LIMIT + 1,
        )
        if len(rows) > PENDING_READ_LIMIT:
            return [EVERYTHING]
        return [_change(row) for row in rows]

    async def sweep(self, apply: Callable[[Sequence[Change]], Awaitable[bool]]) -> int:
        """Apply and delete a batch of rows; rows another instance is sweeping
        are skipped. If ``apply`` fails, nothing is deleted. Returns the count."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT id, user_ids, scope FROM cache_outbox ORDER BY id"
                " LIMIT $1 FOR UPDATE SKIP LOCKED",
                SWEEP_BATCH,
            )
            if not rows or not await apply([_change(row) for row in rows]):
                return 0
            await conn.execute(
                "DELETE FROM cache_outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
            return len(rows)

    async def count(self) -> int:
        return int(await self._db.fetchval("SELECT count(*) FROM cache_outbox"))


def _change(row: asyncpg.Record) -> Change:
    ids = row["user_ids"]
    return Change(None if ids is None else tuple(ids), row["scope"])
