"""How far the outbox of cache invalidations lags: rows not yet acknowledged,
and the age of the oldest. Rows are normally acknowledged within a lease
renewal; rows that stay mean no instance can apply them (Redis away)."""

from __future__ import annotations

from dataclasses import dataclass

from hita.db.database import Database
from hita.db.outbox import Outbox


@dataclass(frozen=True, slots=True)
class OutboxLag:
    rows: int
    oldest_age_s: float  # 0 when there is no row


async def read_outbox_lag(database: Database) -> OutboxLag:
    """One query; raises ``DatabaseUnavailable`` (or ``Overloaded``) like any other."""
    rows, age = await Outbox(database).waiting()
    return OutboxLag(rows, max(0.0, age))
