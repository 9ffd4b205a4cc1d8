"""The points balance on ``users`` and its ledger, ``points_transactions``.

Callers run a balance change and its ledger row in one transaction."""

from __future__ import annotations

from typing import Final

import asyncpg

from hita.db.database import Queryable
from hita.domain.points import PointsEntry

_ENTRY_COLUMNS: Final = "id, user_id, amount, reason, balance_after, created_at"


def entry(row: asyncpg.Record) -> PointsEntry:
    return PointsEntry(
        id=row["id"],
        user_id=row["user_id"],
        amount=row["amount"],
        reason=row["reason"],
        balance_after=row["balance_after"],
        created_at=row["created_at"],
    )


class PointsRepository:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def credit(self, user_id: str, amount: int) -> int | None:
        """The new balance, or None when there is no such user."""
        balance: int | None = await self._db.fetchval(
            """
            UPDATE users SET points = points + $2, updated_at = now()
            WHERE id = $1
            RETURNING points
            """,
            user_id,
            amount,
        )
        return balance

    async def debit(self, user_id: str, amount: int) -> int | None:
        """The new balance, or None when the user is missing or has too few points.

        One conditional statement: the row lock makes concurrent debits queue,
        and each re-checks ``points >= amount`` on the latest balance.
        """
        balance: int | None = await self._db.fetchval(
            """
            UPDATE users SET points = points - $2, updated_at = now()
            WHERE id = $1 AND points >= $2
            RETURNING points
            """,
            user_id,
            amount,
        )
        return balance

    async def record(
        self,
        user_id: str,
        amount: int,
        reason: str,
        balance_after: int,
        idempotency_key: str | None = None,
    ) -> PointsEntry:
        row = await self._db.fetchrow(
            f"""
            INSERT INTO points_transactions
                (user_id, amount, reason, balance_after, idempotency_key)
            VALUES ($1, $2, $3, $4, $5)
            RETURNING {_ENTRY_COLUMNS}
            """,  # noqa: S608 - a constant column list
            user_id,
            amount,
            reason,
            balance_after,
            idempotency_key,
        )
        assert row is not None  # INSERT ... RETURNING returns its row
        return entry(row)

    async def lock_user(self, user_id: str) -> None:
        """Hold the user's row until the transaction ends: changes of one user's
        points (on any instance) then run one after another, and each statement
        after this one sees what the one before committed."""
        await self._db.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)

    async def by_idempotency_key(self, user_id: str, key: str) -> PointsEntry | None:
        """The ledger row a change with this key left, if one did."""
        row = await self._db.fetchrow(
            f"""
            SELECT {_ENTRY_COLUMNS} FROM points_transactions
            WHERE user_id = $1 AND idempotency_key = $2
            """,  # noqa: S608 - a constant column list
            user_id,
            key,
        )
        return None if row is None else entry(row)

    async def history(
        self, user_id: str, limit: int, offset: int
    ) -> tuple[int, list[PointsEntry]] | None:
        """How many ledger rows the user has and one page of them, newest
        first; None when there is no such user. One statement, so one snapshot
        and one round trip on the connection: a user with no row on the page
        comes back as one row of NULLs beside its count."""
        rows = await self._db.fetch(
            f"""
            SELECT total.n AS total, page.*
            FROM users
            CROSS JOIN LATERAL (
                SELECT count(*) AS n FROM points_transactions WHERE user_id = users.id
            ) AS total
            LEFT JOIN LATERAL (
                SELECT {_ENTRY_COLUMNS} FROM points_transactions
                WHERE user_id = users.id
                ORDER BY created_at DESC, id DESC
                LIMIT $2 OFFSET $3
            ) AS page ON true
            WHERE users.id = $1
            """,  # noqa: S608 - a constant column list
            user_id,
            limit,
            offset,
        )
        if not rows:
            return None
        return rows[0]["total"], [entry(row) for row in rows if row["id"] is not None]
