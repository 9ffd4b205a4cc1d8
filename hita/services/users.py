"""``UserService``: users, their role rules, and the statistics about them.

Read methods return JSON-ready plain data (str, int, bool, None, lists and
dicts; timestamps as ISO 8601 UTC strings) without password hashes, so that a
caching wrapper can store and return them unchanged. Each read is its own
method with plain arguments for the cache to key on; each has a ``*_view``
twin that hands the caller's ``View`` of it (``hita.cache.view``), which a
caching subclass keeps with the entry. Mutations check the rules of
``hita.domain.rules`` and return the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from asyncpg import Connection

from hita.cache.view import NOT_HELD, NotHeld, View
from hita.db.database import Database
from hita.db.shared_reads import SharedReads
from hita.db.users import UserIdTaken, UsersRepository
from hita.domain import rules
from hita.domain.ids import new_user_id
from hita.domain.typedefs import JsonDict
from hita.domain.users import (
    Actor,
    NewUser,
    Principal,
    UserChanges,
    UserListQuery,
    UserRecord,
    pagination,
)
from hita.errors import UserNotFound
from hita.services import stats
from hita.services.passwords import Passwords

T = TypeVar("T")

ID_ATTEMPTS: Final = 5  # random ids collide about once in 90 000 inserts at 100k users


class UserService:
    def __init__(self, database: Database, passwords: Passwords) -> None:
        self._db = database
        self._passwords = passwords
        # Every request's token check reads its user: those waiting for a
        # connection share one query (``hita.db.shared_reads``).
        self._users: SharedReads[str, UserRecord] = SharedReads(
            database,
            fetch_one=lambda db: UsersRepository(db).get,
            fetch_many=lambda db: UsersRepository(db).get_many,
        )

    # -- reads: JSON-ready, cacheable ------------------------------------

    async def get_user(self, user_id: str) -> JsonDict | None:
        """The full user with its permissions, or None. Also the per-request
        check that a token's user still exists, is active and has its role."""
        user = await self._users.get(user_id)
        return None if user is None else user.to_json()

    async def get_caller(self, caller_id: str, *, then: str | None = None) -> JsonDict | None:
        """``get_user`` for a request's token check; ``then`` names the user
        whose details the request reads next (a cache can fetch both at once)."""
        return await self.get_user(caller_id)

    async def list_users(self, query: UserListQuery) -> JsonDict:
        """``{"users": [summary...], "pagination": {...}}``; superadmins are not listed."""
        return await self._page(query, include_superadmins=False)

    async def superadmin_list(self, page: int, page_size: int) -> JsonDict:
        """Every user, superadmins included; the same shape as ``list_users``."""
        query = UserListQuery(page=page, page_size=page_size)
        return await self._page(query, include_superadmins=True)

    async def user_stats(self) -> JsonDict:
        return await stats.user_stats(self._db)

    async def dashboard_stats(self) -> JsonDict:
        return await stats.dashboard_stats(self._db)

    async def _page(self, query: UserListQuery, *, include_superadmins: bool) -> JsonDict:
        """The count and the page from one snapshot, so they agree."""

        async def read(conn: Connection) -> tuple[int, list[UserRecord]]:
            repo = UsersRepository(conn)
            total = await repo.count(query, include_superadmins=include_superadmins)
            return total, await repo.page(query, include_superadmins=include_superadmins)

        total, users = await self._db.atomic(read, isolation="repeatable_read", readonly=True)
        return {
            "users": [u.summary_json() for u in users],
            "pagination": pagination(query.page, query.page_size, total),
        }

    # -- views: what a reader makes of a read (a caching subclass keeps them) --

    async def user_view(self, user_id: str, view: View[T]) -> T:
        return view.derive(await self.get_user(user_id))

    def held_user_view(self, user_id: str, view: View[T]) -> T | NotHeld:
        """``user_view``'s answer if it is at hand without waiting for anything
        (a caching service: kept in memory with the entry), else NOT_HELD: then
        ask ``user_view`` or ``caller_view``."""
        return NOT_HELD

    def held_list_view(self, query: UserListQuery, view: View[T]) -> T | NotHeld:
        """``list_view``'s answer if it is at hand (as ``held_user_view``)."""
        return NOT_HELD

    def held_superadmin_list_view(self, page: int, page_size: int, view: View[T]) -> T | NotHeld:
        return NOT_HELD

    def held_user_stats_view(self, view: View[T]) -> T | NotHeld:
        return NOT_HELD

    def held_dashboard_stats_view(self, view: View[T]) -> T | NotHeld:
        return NOT_HELD

    async def caller_view(
        self, caller_id: str, view: View[T], *, then: Callable[[], str | None] | None = None
    ) -> T:
        """``get_caller``'s view; ``then`` says (when asked) whom the request reads next."""
        return view.derive(await self.get_caller(caller_id, then=then() if then else None))

    async def list_view(self, query: UserListQuery, view: View[T]) -> T:
        return view.derive(await self.list_users(query))

    async def superadmin_list_view(self, page: int, page_size: int, view: View[T]) -> T:
        return view.derive(await self.superadmin_list(page, page_size))

    async def user_stats_view(self, view: View[T]) -> T:
        return view.derive(await self.user_stats())

    async def dashboard_stats_view(self, view: View[T]) -> T:
        return view.derive(await self.dashboard_stats())

    # -- mutations ---------------------------------------------------------

    async def create_user(self, actor: Actor, new: NewUser) -> JsonDict:
        rules.check_create(actor, new.role)
        password_hash = await self._passwords.hash(new.password)

        async def insert_in(conn: Connection) -> UserRecord:
            return await UsersRepository(conn).insert(
                new_user_id(),
                username=new.username,
                email=new.email,
                full_name=new.full_name,
                password_hash=password_hash,
                role=new.role,
                is_active=new.is_active,
            )

        async def insert() -> UserRecord:
            return await self._db.atomic(insert_in)  # in a transaction: its id is known

        for _ in range(ID_ATTEMPTS - 1):
            try:
                return (await insert()).to_json()
            except UserIdTaken:
                continue
        return (await insert()).to_json()

    async def update_user(self, actor: Principal, user_id: str, changes: UserChanges) -> JsonDict:
        password_hash = None
        if changes.password is not None:
            password_hash = await self._passwords.hash(changes.password)

        async def update(conn: Connection) -> JsonDict:
            repo = UsersRepository(conn)
            current = await self._locked(repo, user_id)
            rules.check_update(actor, current, changes.changed_fields(current), changes.role)
            await repo.update(
                user_id,
                username=changes.username,
                email=changes.email,
                full_name=changes.full_name,
                password_hash=password_hash,
                role=changes.role,
                is_active=changes.is_active,
            )
            return await self._fresh(repo, user_id)

        return await self._db.atomic(update)

    async def delete_user(self, actor: Principal, user_id: str) -> None:
        async def delete(conn: Connection) -> None:
            repo = UsersRepository(conn)
            rules.check_delete(actor, await self._locked(repo, user_id))
            await repo.delete(user_id)

        await self._db.atomic(delete)

    async def set_active(self, actor: Principal, user_id: str, active: bool) -> JsonDict:
        async def set_it(conn: Connection) -> JsonDict:
            repo = UsersRepository(conn)
            rules.check_set_active(actor, await self._locked(repo, user_id), active)
            await repo.update(
                user_id,
                username=None,
                email=None,
                full_name=None,
                password_hash=None,
                role=None,
                is_active=active,
            )
            return await self._fresh(repo, user_id)

        return await self._db.atomic(set_it)

    @staticmethod
    async def _locked(repo: UsersRepository, user_id: str) -> UserRecord:
        user = await repo.get_for_update(user_id)
        if user is None:
            raise UserNotFound()
        return user

    @staticmethod
    async def _fresh(repo: UsersRepository, user_id: str) -> JsonDict:
        user = await repo.get(user_id)
        if user is None:  # the row is locked by our transaction
            raise UserNotFound()
        return user.to_json()
