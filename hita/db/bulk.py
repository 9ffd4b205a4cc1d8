"""Bulk loading with COPY, for ``hita seed``. Runs on one transaction's connection."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import asyncpg

from hita.db.users import raise_unique

USER_COLUMNS: Final = (
    "id",
    "username",
    "email",
    "full_name",
    "password_hash",
    "role",
    "is_active",
    "points",
    "created_at",
    "updated_at",
    "last_login_at",
)
LEDGER_COLUMNS: Final = ("user_id", "amount", "reason", "balance_after", "created_at")
PERMISSION_COLUMNS: Final = ("user_id", "permission", "granted_at")
# An operator's bulk load is not a request: it may take far longer than
# DB_COMMAND_TIMEOUT_S (a million users with their ledgers take minutes).
BULK_TIMEOUT_S: Final = 3600.0  # 1 hour


class BulkLoader:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def user_ids(self) -> set[str]:
        return {row["id"] for row in await self._conn.fetch("SELECT id FROM users")}

    async def user_count(self) -> int:
        count: int = await self._conn.fetchval("SELECT count(*) FROM users")
        return count

    async def _copy(
        self, table: str, columns: Sequence[str], records: Iterable[tuple[Any, ...]]
    ) -> None:
        try:
            await self._conn.copy_records_to_table(
                table, records=records, columns=columns, timeout=BULK_TIMEOUT_S
            )
        except asyncpg.UniqueViolationError as exc:
            raise_unique(exc)

    async def copy_users(self, records: Iterable[tuple[Any, ...]]) -> None:
        await self._copy("users", USER_COLUMNS, records)

    async def copy_ledger(self, records: Iterable[tuple[Any, ...]]) -> None:
        await self._copy("points_transactions", LEDGER_COLUMNS, records)

    async def copy_permissions(self, records: Iterable[tuple[Any, ...]]) -> None:
        await self._copy("user_permissions", PERMISSION_COLUMNS, records)

    async def analyze(self) -> None:
        """Fresh planner statistics and visibility map, as autovacuum would leave
        them a little later: the first queries on new rows are then as fast as later ones."""
        await self._conn.execute(
            "VACUUM (ANALYZE) users, points_transactions, user_permissions",
            timeout=BULK_TIMEOUT_S,
        )

    async def upsert_demo_account(
        self, user_id: str, username: str, role: str, password_hash: str
    ) -> None:
        """A known login for local use; an existing one gets this run's password."""
        await self._conn.execute(
            """
            INSERT INTO users (id, username, email, full_name, password_hash, role)
            VALUES ($1, $2, $2 || '@demo.hita.example', initcap(replace($2, '.', ' ')), $3, $4)
            ON CONFLICT ((lower(username))) DO UPDATE
                SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,
                    is_active = true, updated_at = now()
            """,
            user_id,
            username,
            password_hash,
            role,
        )
