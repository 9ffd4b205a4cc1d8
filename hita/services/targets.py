"""The check before a change to a user's points or permissions."""

from __future__ import annotations

from hita.db.database import Queryable
from hita.db.users import UsersRepository
from hita.domain import rules
from hita.domain.users import Principal
from hita.errors import UserNotFound


async def check_may_change(conn: Queryable, actor: Principal, user_id: str) -> None:
    """404 for an unknown user, 403 for an admin changing a superadmin; the
    user's row stays locked against a role change until the transaction ends."""
    role = await UsersRepository(conn).role_for_update(user_id)
    if role is None:
        raise UserNotFound()
    rules.check_account_change(actor, user_id, role)
