"""``user_permissions``: one row per (user, permission) pair."""

from __future__ import annotations

import asyncpg

from hita.db.database import Queryable


class PermissionsRepository:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def of_user(self, user_id: str) -> list[str]:
        rows = await self._db.fetch(
            "SELECT permission FROM user_permissions WHERE user_id = $1 ORDER BY permission",
            user_id,
        )
        return [row["permission"] for row in rows]

    async def grant(self, user_id: str, permission: str) -> bool:
        """False when there is no such user; granting twice is not an error."""
        try:
            await self._db.execute(
                """
                INSERT INTO user_permissions (user_id, permission) VALUES ($1, $2)
                ON CONFLICT (user_id, permission) DO NOTHING
                """,
                user_id,
                permission,
            )
        except asyncpg.ForeignKeyViolationError:
            return False
        return True

    async def revoke(self, user_id: str, permission: str) -> bool:
        """Whether the pair existed."""
        status = await self._db.execute(
            "DELETE FROM user_permissions WHERE user_id = $1 AND permission = $2",
            user_id,
            permission,
        )
        return status == "DELETE 1"
