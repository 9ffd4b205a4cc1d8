"""How far the outbox of cache invalidations lags: rows not yet swept, and the
age of the oldest. Rows normally live about one sweep interval
(``CACHE_OUTBOX_SWEEP_MS``); rows that stay mean no instance can apply them
(Redis away) or none is sweeping."""

from __future__ import annotations

from dataclasses import dataclass

from hita.db.database import Database


@dataclass(frozen=True, slots=True)
class OutboxLag:
    rows: int
    oldest_age_s: float  # 0 when there is no row


async def read_outbox_lag(database: Database) -> OutboxLag:
    """One query; raises ``DatabaseUnavailable`` (or ``Overloaded``) like any other."""
    row = await database.fetchrow(
        "SELECT count(*) AS n,"
        " COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0) AS age"
        " FROM cache_outbox"
    )
    assert row is not None, "an aggregate always returns a row"
    return OutboxLag(int(row["n"]), max(0.0, float(row["age"])))
