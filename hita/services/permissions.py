"""``PermissionService``: fine-grained permissions such as ``reservations.write``.

Granting a permission held already, or revoking one not held, succeeds and
changes nothing: the answer is always the user's permissions afterwards."""

from __future__ import annotations

from asyncpg import Connection

from hita.db.database import Database
from hita.db.permissions import PermissionsRepository
from hita.domain.typedefs import JsonDict
from hita.domain.users import Principal
from hita.errors import UserNotFound
from hita.services.targets import check_may_change


def _result(user_id: str, permissions: list[str]) -> JsonDict:
    return {"user_id": user_id, "permissions": permissions}


class PermissionService:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def of_user(self, user_id: str) -> JsonDict:
        permissions = await PermissionsRepository(self._db).of_existing_user(user_id)
        if permissions is None:
            raise UserNotFound()
        return _result(user_id, permissions)

    async def grant(self, actor: Principal, user_id: str, permission: str) -> JsonDict:
        async def grant(conn: Connection) -> JsonDict:
            await check_may_change(conn, actor, user_id)
            repo = PermissionsRepository(conn)
            if not await repo.grant(user_id, permission):
                raise UserNotFound()
            return _result(user_id, await repo.of_user(user_id))

        return await self._db.atomic(grant)

    async def revoke(self, actor: Principal, user_id: str, permission: str) -> JsonDict:
        async def revoke(conn: Connection) -> JsonDict:
            await check_may_change(conn, actor, user_id)
            repo = PermissionsRepository(conn)
            await repo.revoke(user_id, permission)
            return _result(user_id, await repo.of_user(user_id))

        return await self._db.atomic(revoke)
