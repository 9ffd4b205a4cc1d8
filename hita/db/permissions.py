"""``user_permissions``: one row per (user, permission) pair."""

from __future__ import annotations

import asyncpg

from hita.db.database import Queryable


class PermissionsRepository:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def of_existing_user(self, user_id: str) -> list[str] | None:
        """The user's permissions, or None when there is no such user: one
        statement, so one snapshot and one round trip on the connection."""
        permissions: list[str] | None = await self._db.fetchval(
            """
            SELECT ARRAY(SELECT p.permission FROM user_permissions p
                         WHERE p.user_id = users.id ORDER BY p.permission)
            FROM users WHERE id = $1
            """,
            user_id,
        )
        return permissions

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
