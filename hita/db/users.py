"""The ``users`` table. Returns domain records; never returns a hash except
through ``credentials`` (login)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, NoReturn

import asyncpg

from hita.db.database import Queryable
from hita.domain.roles import Role
from hita.domain.users import Credentials, UserListQuery, UserRecord
from hita.errors import Conflict

_COLUMNS: Final = (
    "id, username, email, full_name, role, is_active, points, created_at, updated_at,"
    " last_login_at, password_changed_at"
)
# A user with its permissions; the caller adds the WHERE clause.
_WITH_PERMISSIONS: Final = f"""
    SELECT {_COLUMNS},
           ARRAY(SELECT p.permission FROM user_permissions p
                 WHERE p.user_id = users.id ORDER BY p.permission) AS permissions
    FROM users
"""  # noqa: S608 - a constant column list
# unique index -> the field a client must change
_UNIQUE_FIELDS: Final = {
    "users_username_lower_key": "username",
    "users_email_lower_key": "email",
}
# The filters of the user list; $1 says whether superadmins are listed at all.
_LIST_WHERE: Final = """
    WHERE ($1 OR role <> 'superadmin')
      AND ($2::text IS NULL OR role = $2)
      AND ($3::boolean IS NULL OR is_active = $3)
      AND ($4::text IS NULL OR username ILIKE $4 OR email ILIKE $4 OR full_name ILIKE $4)
"""


class UserIdTaken(Exception):
    """The random id drawn for a new user exists already: draw another."""


def like_pattern(term: str) -> str:
    """``%term%`` with LIKE's wildcards in ``term`` taken literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _now() -> datetime:
    """A password's time of change, on the clock that stamps tokens (``iat``),
    so that a token issued right after a change is never taken for older."""
    return datetime.now(UTC)


def record(row: asyncpg.Record) -> UserRecord:
    return UserRecord(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        full_name=row["full_name"],
        role=Role(row["role"]),
        is_active=row["is_active"],
        points=row["points"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_login_at=row["last_login_at"],
        password_changed_at=row["password_changed_at"],
        permissions=tuple(row["permissions"]) if "permissions" in row else (),
    )


def raise_unique(exc: asyncpg.UniqueViolationError) -> NoReturn:
    """A unique violation as the error that names what to change."""
    name = exc.constraint_name or ""
    if name == "users_pkey":
        raise UserIdTaken() from None
    field = _UNIQUE_FIELDS.get(name)
    if field is None:
        raise exc
    raise Conflict(f"A user with this {field} already exists") from None


def _list_args(query: UserListQuery, include_superadmins: bool) -> tuple[object, ...]:
    return (
        include_superadmins,
        None if query.role is None else query.role.value,
        query.is_active,
        None if query.search is None else like_pattern(query.search),
    )


class UsersRepository:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def insert(
        self,
        user_id: str,
        *,
        username: str,
        email: str,
        full_name: str,
        password_hash: str,
        role: Role,
        is_active: bool,
    ) -> UserRecord:
        try:
            row = await self._db.fetchrow(
                f"""
                INSERT INTO users (id, username, email, full_name, password_hash, role, is_active,
                                   password_changed_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                RETURNING {_COLUMNS}
                """,  # noqa: S608 - a constant column list
                user_id,
                username,
                email,
                full_name,
                password_hash,
                role.value,
                is_active,
                _now(),
            )
        except asyncpg.UniqueViolationError as exc:
            raise_unique(exc)
        assert row is not None  # INSERT ... RETURNING returns its row
        return record(row)

    async def get(self, user_id: str) -> UserRecord | None:
        """The user with its permissions, in one query."""
        row = await self._db.fetchrow(f"{_WITH_PERMISSIONS} WHERE id = $1", user_id)
        return None if row is None else record(row)

    async def get_many(self, user_ids: list[str]) -> dict[str, UserRecord]:
        """``get`` for several users in one query, by id; absent ids are left out."""
        rows = await self._db.fetch(f"{_WITH_PERMISSIONS} WHERE id = ANY($1::text[])", user_ids)
        return {row["id"]: record(row) for row in rows}

    async def get_for_update(self, user_id: str) -> UserRecord | None:
        """The user, row-locked until the end of the caller's transaction."""
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE id = $1 FOR UPDATE",  # noqa: S608
            user_id,
        )
        return None if row is None else record(row)

    async def role_for_update(self, user_id: str) -> Role | None:
        """The user's role, the row locked against a role change until the end
        of the caller's transaction (a lock that still lets others reference it)."""
        role = await self._db.fetchval(
            "SELECT role FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id
        )
        return None if role is None else Role(role)

    async def exists(self, user_id: str) -> bool:
        return bool(
            await self._db.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id)
        )

    async def credentials(self, username: str) -> Credentials | None:
        row = await self._db.fetchrow(
            """
            SELECT id, role, is_active, password_hash FROM users
            WHERE lower(username) = lower($1)
            """,
            username,
        )
        if row is None:
            return None
        return Credentials(row["id"], Role(row["role"]), row["is_active"], row["password_hash"])

    async def record_login(self, user_id: str, password_hash: str | None) -> str | None:
        """Stamp the login; also stores a rehash when the hashing parameters
        changed. The id of the transaction (one statement, committed when it
        answers), or None when the user is gone."""
        xid: str | None = await self._db.fetchval(
            """
            UPDATE users SET last_login_at = now(),
                             password_hash = COALESCE($2, password_hash)
            WHERE id = $1
            RETURNING pg_current_xact_id()::text
            """,
            user_id,
            password_hash,
        )
        return xid

    async def update(
        self,
        user_id: str,
        *,
        username: str | None,
        email: str | None,
        full_name: str | None,
        password_hash: str | None,
        role: Role | None,
        is_active: bool | None,
    ) -> UserRecord | None:
        """Set the given fields (None keeps the stored value)."""
        try:
            row = await self._db.fetchrow(
                f"""
                UPDATE users SET
                    username = COALESCE($2, username),
                    email = COALESCE($3, email),
                    full_name = COALESCE($4, full_name),
                    password_hash = COALESCE($5, password_hash),
                    password_changed_at = CASE WHEN $5 IS NULL THEN password_changed_at
                                               ELSE $8 END,
                    role = COALESCE($6, role),
                    is_active = COALESCE($7, is_active),
                    updated_at = now()
                WHERE id = $1
                RETURNING {_COLUMNS}
                """,  # noqa: S608 - a constant column list
                user_id,
                username,
                email,
                full_name,
                password_hash,
                None if role is None else role.value,
                is_active,
                _now(),
            )
        except asyncpg.UniqueViolationError as exc:
            raise_unique(exc)
        return None if row is None else record(row)

    async def delete(self, user_id: str) -> bool:
        status = await self._db.execute("DELETE FROM users WHERE id = $1", user_id)
        return status == "DELETE 1"

    async def count(self, query: UserListQuery, *, include_superadmins: bool) -> int:
        total: int = await self._db.fetchval(
            f"SELECT count(*) FROM users {_LIST_WHERE}",  # noqa: S608 - a constant clause
            *_list_args(query, include_superadmins),
        )
        return total

    async def page(self, query: UserListQuery, *, include_superadmins: bool) -> list[UserRecord]:
        """One page, newest first; ties broken by id so pages never overlap."""
        rows = await self._db.fetch(
            f"""
            SELECT {_COLUMNS} FROM users {_LIST_WHERE}
            ORDER BY created_at DESC, id DESC
            LIMIT $5 OFFSET $6
            """,  # noqa: S608 - constant column list and clause
            *_list_args(query, include_superadmins),
            query.page_size,
            query.offset,
        )
        return [record(row) for row in rows]
