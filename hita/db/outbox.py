"""The outbox of cache invalidations, and each instance's reader session.

Triggers (migrations 0005, 0006) write a row to ``cache_outbox`` in the
transaction of every change to users or permissions: which users changed
(None: every user) and whether only their details changed. This module knows
PostgreSQL and nothing of Redis:

* ``ReaderSession`` is one dedicated connection per instance. It renews the
  instance's reader lease (``cache_readers``) and, in the same statement,
  reads every unacknowledged outbox row committed since the snapshot it read
  last; it reports, with each renewal, the snapshot whose rows the instance
  took in before renewing, and which rows the instance has applied to Redis.
  Writers ask it for the other readers' state. It also LISTENs, for hints:
  a new row (renew soon), or a writer waiting for the readers (renew now),
  and probes that its LISTEN delivers (``listen_probe``).
* ``Outbox`` is the table seen from the shared pool: the sweep re-applies
  rows nobody acknowledged, prunes acknowledged rows after their retention,
  and collapses an overgrown backlog into one "every user changed" row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import orjson

from hita.constants import OUTBOX_CHANNEL
from hita.db.database import UNAVAILABLE_ERRORS, Database
from hita.db.listen_probe import ListenProbe
from hita.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

APPLICATION_NAME: Final = "hita-coherence"
HURRY: Final = "hurry"  # the payload of a writer's notification
SWEEP_BATCH: Final = 1_000  # rows per sweep transaction
PRUNE_BATCH: Final = 10_000  # rows deleted per prune statement


@dataclass(frozen=True, slots=True)
class Change:
    """What one committed statement changed: some users (None: every user),
    and whether only their details ('details') or everything shown of them ('all')."""

    id: int
    user_ids: tuple[str, ...] | None
    scope: str

    @property
    def details_only(self) -> bool:
        return self.scope == "details"


def _change(row: Sequence[Any]) -> Change:
    row_id, ids, scope = row
    return Change(int(row_id), None if ids is None else tuple(str(i) for i in ids), str(scope))


@dataclass(frozen=True, slots=True)
class Renewal:
    snapshot: str  # pg_snapshot text: the rows below are those it sees and the last did not
    changes: list[Change]


@dataclass(frozen=True, slots=True)
class Ack:
    """One transaction whose invalidation Redis acknowledged, for one user."""

    xid: str
    user_id: str
    everything_shown: bool  # every family shown of the user, not only details


@dataclass(frozen=True, slots=True)
class Readers:
    snapshot: str  # taken when the question was asked
    applied: list[str | None]  # each live reader's last reported snapshot


_RENEW: Final = """
WITH mine AS (
    -- This instance's row, locked first, NOWAIT: while a statement of an
    -- earlier session of ours holds it (its backend stopped mid-renewal), a
    -- renewal fails at once. Waiting, it would outlive its client's timeout
    -- on the server, and the next session's would queue behind it, one more
    -- each timeout, until PostgreSQL's connection slots ran out.
    SELECT instance FROM cache_readers WHERE instance = $1 FOR UPDATE NOWAIT
), me AS (
    INSERT INTO cache_readers AS r (instance, lease_until, applied, renewed_at)
    SELECT $1, now() + make_interval(secs => $2), $3::text::pg_snapshot, now()
      FROM (SELECT count(*) FROM mine) AS locked
    ON CONFLICT (instance) DO UPDATE
        -- Never backward: a renewal sent on a connection given up on (its
        -- timeout) may still commit after one on the next connection.
        SET lease_until = GREATEST(r.lease_until, EXCLUDED.lease_until),
            applied = EXCLUDED.applied, renewed_at = EXCLUDED.renewed_at
    RETURNING 1
), acked AS (
    -- An acknowledgement only saves other readers work: rows another
    -- transaction holds (a renewal or a writer stopped mid-statement) are
    -- left to it, never waited for.
    UPDATE cache_outbox SET acked_at = now()
    WHERE id IN (SELECT id FROM cache_outbox
                  WHERE id = ANY($4::bigint[]) AND acked_at IS NULL
                  FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT pg_current_snapshot()::text AS snapshot,
       (SELECT count(*) FROM me) + (SELECT count(*) FROM acked) AS written,
       COALESCE((SELECT json_agg(json_build_array(o.id, o.user_ids, o.scope) ORDER BY o.id)
                   FROM cache_outbox o
                  WHERE o.acked_at IS NULL
                    AND ($3::text IS NULL
                         OR (o.xid >= pg_snapshot_xmin($3::text::pg_snapshot)
                             AND NOT pg_visible_in_snapshot(o.xid, $3::text::pg_snapshot)))),
                '[]') AS rows
"""

_READERS: Final = """
SELECT pg_current_snapshot()::text AS snapshot,
       COALESCE(json_agg(applied::text)
                  FILTER (WHERE lease_until > clock_timestamp() - make_interval(secs => $1)),
                '[]') AS applied
  FROM cache_readers
"""


class ReaderSession:
    """This instance's own connection to PostgreSQL, outside the shared pool
    (so a saturated pool never keeps it from renewing). Every call is bounded
    by ``timeout_s``; any failure closes the connection and raises
    ``DatabaseUnavailable``: the owner reconnects."""

    def __init__(
        self,
        dsn: str,
        instance: str,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        on_hint: Callable[[bool], None],
        probe_send: Callable[[str], Awaitable[None]],
    ) -> None:
        self._dsn = dsn
        self.instance = instance
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._on_hint = on_hint
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self.connections = 0  # how many times it was opened
        self.pid: int | None = None  # its backend's, for tests and operators
        self.probe = ListenProbe(instance, probe_send)  # does its LISTEN deliver?

    @property
    def open(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        await self.close()
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._connect_timeout_s,
                server_settings={"application_name": APPLICATION_NAME},
                # Unnamed statements: a few a second, and they work through a
                # pooler in transaction mode too (a named one would be looked
                # for on another server connection).
                statement_cache_size=0,
            )
            await conn.add_listener(OUTBOX_CHANNEL, self._notified)
        except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable(f"reader session: {exc.__class__.__name__}") from exc
        self._conn = conn
        self.pid = conn.get_server_pid()
        self.connections += 1

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if ListenProbe.is_probe(payload):
            self.probe.heard(payload)
        else:
            self._on_hint(payload == HURRY)

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record:
        conn = self._conn
        if conn is None or conn.is_closed():
            raise DatabaseUnavailable("reader session closed")
        try:
            async with self._lock, asyncio.timeout(self._timeout_s):
                row: asyncpg.Record = await conn.fetchrow(sql, *args)
        except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
            await self.close()
            raise DatabaseUnavailable(f"reader session: {exc.__class__.__name__}") from exc
        return row

    async def renew(self, lease_s: float, applied: str | None, acked: Sequence[int]) -> Renewal:
        """Hold the lease ``lease_s`` more seconds from now (the server's
        clock), report ``applied`` and the rows ``acked``; the rows committed
        since ``applied`` (all unacknowledged rows when None)."""
        row = await self._fetchrow(_RENEW, self.instance, lease_s, applied, list(acked))
        rows = orjson.loads(row["rows"])
        return Renewal(row["snapshot"], [_change(r) for r in rows])

    async def readers(self, grace_s: float) -> Readers:
        """The readers whose lease ended less than ``grace_s`` ago, or has not
        ended, by the server's clock: a lease the server's clock ends early
        (it jumped forward) is still waited for, on the writer's own clock."""
        row = await self._fetchrow(_READERS, grace_s)
        return Readers(row["snapshot"], orjson.loads(row["applied"]))

    async def hurry(self) -> None:
        """Ask every reader to renew at once (a writer waits for them)."""
        await self._fetchrow("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, HURRY)

    async def release(self) -> None:
        """Give the lease back (a clean stop): writers stop waiting for us."""
        if self.open:
            await self._fetchrow(
                "UPDATE cache_readers SET lease_until = now() WHERE instance IN"
                " (SELECT instance FROM cache_readers WHERE instance = $1 FOR UPDATE NOWAIT)"
                " RETURNING 1",
                self.instance,
            )


class Outbox:
    """The ``cache_outbox`` table, from the shared pool."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def sweep(
        self, apply: Callable[[Sequence[Change]], Awaitable[bool]], *, older_than_s: float
    ) -> int:
        """Apply rows nobody acknowledged within ``older_than_s`` and mark them
        acknowledged; rows another instance is sweeping are skipped. If
        ``apply`` fails, nothing is marked. Returns the count."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT id, user_ids, scope FROM cache_outbox"
                " WHERE acked_at IS NULL AND created_at < now() - make_interval(secs => $1)"
                " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                older_than_s,
                SWEEP_BATCH,
            )
            changes = [_change(tuple(r)) for r in rows]
            if not changes or not await apply(changes):
                return 0
            await conn.execute(
                "UPDATE cache_outbox SET acked_at = now() WHERE id = ANY($1::bigint[])",
                [c.id for c in changes],
            )
            return len(changes)

    async def prune(self, retention_s: float) -> int:
        """Delete acknowledged rows older than ``retention_s``, and readers gone for a day."""
        status = await self._db.execute(
            "DELETE FROM cache_outbox WHERE id IN (SELECT id FROM cache_outbox"
            " WHERE acked_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)",
            retention_s,
            PRUNE_BATCH,
        )
        await self._db.execute(
            "DELETE FROM cache_readers WHERE lease_until < now() - interval '1 day'"
        )
        return int(status.split()[-1])

    async def compact(self, max_rows: int) -> bool:
        """Past ``max_rows`` unacknowledged rows, replace them by one row that
        says every user changed: readers then distrust everything until it is
        applied, and the table stays bounded. True if it compacted."""
        async with self._db.transaction() as conn:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM cache_outbox WHERE acked_at IS NULL"
                " LIMIT $1) AS w",
                max_rows + 1,
            )
            if waiting <= max_rows:
                return False
            await conn.execute(  # rows held by an acknowledgement under way stay
                "DELETE FROM cache_outbox WHERE id IN (SELECT id FROM cache_outbox"
                " WHERE acked_at IS NULL FOR UPDATE SKIP LOCKED)"
            )
            await conn.execute("INSERT INTO cache_outbox (user_ids, scope) VALUES (NULL, 'all')")
        log.warning("the outbox held over %d unapplied changes: collapsed into one", max_rows)
        return True

    async def acknowledge(self, acks: Sequence[Ack]) -> int:
        """Mark acknowledged, in one statement, the rows each ``Ack`` covers:
        rows of its transactions naming only its user, and changing only
        details unless it invalidated everything shown of that user. Rows
        another transaction holds are skipped, not waited for (``_RENEW``)."""
        row = await self._db.fetchrow(
            "WITH acks AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bool[])"
            " AS a(xid, user_id, everything)),"
            " covered AS (SELECT o.id FROM cache_outbox o JOIN acks"
            " ON o.xid = acks.xid::xid8 AND o.acked_at IS NULL"
            " AND o.user_ids <@ ARRAY[acks.user_id]"
            " AND (o.scope = 'details' OR acks.everything)"
            " FOR UPDATE OF o SKIP LOCKED),"
            " acked AS (UPDATE cache_outbox o SET acked_at = now() FROM covered"
            " WHERE o.id = covered.id RETURNING 1)"
            " SELECT count(*) AS n FROM acked",
            [a.xid for a in acks],
            [a.user_id for a in acks],
            [a.everything_shown for a in acks],
        )
        assert row is not None
        return int(row["n"])

    async def waiting(self) -> tuple[int, float]:
        """Rows not yet acknowledged, and the age in seconds of the oldest."""
        row = await self._db.fetchrow(
            "SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)"
            " AS age FROM cache_outbox WHERE acked_at IS NULL"
        )
        assert row is not None
        return int(row["n"]), float(row["age"])

    async def count(self) -> int:
        return int(await self._db.fetchval("SELECT count(*) FROM cache_outbox"))

    async def notify(self, payload: str) -> None:
        """NOTIFY ``payload`` on the outbox's channel (the readers' probe)."""
        await self._db.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, payload)

    async def changed_since(self, seconds: float) -> list[Change]:
        """Every change committed in the last ``seconds``, acknowledged or not."""
        rows = await self._db.fetch(
            "SELECT id, user_ids, scope FROM cache_outbox"
            " WHERE created_at > now() - make_interval(secs => $1) ORDER BY id",
            seconds,
        )
        return [_change(tuple(r)) for r in rows]
