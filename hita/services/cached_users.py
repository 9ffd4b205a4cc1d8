"""``CachedUserService``: a ``UserService`` whose reads go through Redis.

| read | key | TTL |
| --- | --- | --- |
| ``get_user`` | ``user_details:{user_id}`` | USER_DETAILS_TTL (not found: NEGATIVE_CACHE_TTL) |
| ``list_users`` | ``user_list:*`` | USER_LIST_TTL |
| ``user_stats`` | ``user_stats:*`` | USER_STATS_TTL |
| ``dashboard_stats`` | ``dashboard_stats:*`` | DASHBOARD_STATS_TTL |
| ``superadmin_list`` | ``superadmin_user_list:*`` | SUPERADMIN_USER_LIST_TTL |

The ``*_view`` reads hand back the caller's ``View`` of the value, kept
beside the entry while L1 holds it (``ReadThrough.near_view``): a warm read
is a lookup. Writes are ``UserService``'s own: over HTTP the invalidation middleware
invalidates what each route changed; code elsewhere (the CLI, the seeder)
calls ``CacheKeys.invalidate_user_caches``. The service's reads return
JSON-ready data without password hashes, so what is cached is exactly what
is served. When Redis is unavailable every read goes to PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from hita.cache.view import NotHeld, View
from hita.config import CacheTTLs
from hita.db.database import Database
from hita.domain.typedefs import JsonDict
from hita.domain.users import UserListQuery
from hita.services.cache_keys import CacheKeys
from hita.services.passwords import Passwords
from hita.services.users import UserService

T = TypeVar("T")


class CachedUserService(UserService):
    def __init__(
        self, database: Database, passwords: Passwords, keys: CacheKeys, ttls: CacheTTLs
    ) -> None:
        super().__init__(database, passwords)
        self.keys = keys
        self.cache = keys.cache
        self._ttls = ttls

    async def get_user(self, user_id: str) -> JsonDict | None:
        return await self.cache.get_or_load(
            self.keys.user_details(user_id),
            partial(super().get_user, user_id),
            ttl=self._ttls.user_details,
            negative_ttl=self._ttls.negative,
        )

    async def get_caller(self, caller_id: str, *, then: str | None = None) -> JsonDict | None:
        if then is not None:  # one round trip for both reads (of one key, if the same)
            await self.cache.read_ahead(
                [self.keys.user_details(caller_id), self.keys.user_details(then)]
            )
        return await self.get_user(caller_id)

    async def list_users(self, query: UserListQuery) -> JsonDict:
        return await self.cache.get_or_load(
            self.keys.user_list(query),
            partial(super().list_users, query),
            ttl=self._ttls.user_list,
        )

    async def superadmin_list(self, page: int, page_size: int) -> JsonDict:
        return await self.cache.get_or_load(
            self.keys.superadmin_user_list(page, page_size),
            partial(super().superadmin_list, page, page_size),
            ttl=self._ttls.superadmin_user_list,
        )

    async def user_stats(self) -> JsonDict:
        return await self.cache.get_or_load(
            self.keys.user_stats(), super().user_stats, ttl=self._ttls.user_stats
        )

    async def dashboard_stats(self) -> JsonDict:
        return await self.cache.get_or_load(
            self.keys.dashboard_stats(), super().dashboard_stats, ttl=self._ttls.dashboard_stats
        )

    async def user_view(self, user_id: str, view: View[T]) -> T:
        found = self.held_user_view(user_id, view)
        return await self._view(found, view, partial(self.get_user, user_id))

    def held_user_view(self, user_id: str, view: View[T]) -> T | NotHeld:
        return self.cache.near_view(self.keys.user_details(user_id), view)

    def held_list_view(self, query: UserListQuery, view: View[T]) -> T | NotHeld:
        return self.cache.near_view(self.keys.user_list(query), view)

    def held_superadmin_list_view(self, page: int, page_size: int, view: View[T]) -> T | NotHeld:
        return self.cache.near_view(self.keys.superadmin_user_list(page, page_size), view)

    def held_user_stats_view(self, view: View[T]) -> T | NotHeld:
        return self.cache.near_view(self.keys.user_stats(), view)

    def held_dashboard_stats_view(self, view: View[T]) -> T | NotHeld:
        return self.cache.near_view(self.keys.dashboard_stats(), view)

    async def caller_view(
        self, caller_id: str, view: View[T], *, then: Callable[[], str | None] | None = None
    ) -> T:
        found = self.held_user_view(caller_id, view)
        if not isinstance(found, NotHeld):
            return found
        return view.derive(await self.get_caller(caller_id, then=then() if then else None))

    async def list_view(self, query: UserListQuery, view: View[T]) -> T:
        found = self.held_list_view(query, view)
        return await self._view(found, view, partial(self.list_users, query))

    async def superadmin_list_view(self, page: int, page_size: int, view: View[T]) -> T:
        found = self.held_superadmin_list_view(page, page_size, view)
        return await self._view(found, view, partial(self.superadmin_list, page, page_size))

    async def user_stats_view(self, view: View[T]) -> T:
        found = self.held_user_stats_view(view)
        return await self._view(found, view, self.user_stats)

    async def dashboard_stats_view(self, view: View[T]) -> T:
        found = self.held_dashboard_stats_view(view)
        return await self._view(found, view, self.dashboard_stats)

    async def _view(
        self, found: T | NotHeld, view: View[T], read: Callable[[], Awaitable[Any]]
    ) -> T:
        """``found``, the view L1 keeps with the entry (a ``held_*_view``), or
        else the view of a read through the cache."""
        return view.derive(await read()) if isinstance(found, NotHeld) else found

    async def refresh_stats(self) -> None:
        """Recompute both statistics now and store them (the scheduled refresh)."""
        await self.cache.refresh(
            self.keys.user_stats(), super().user_stats, ttl=self._ttls.user_stats
        )
        await self.cache.refresh(
            self.keys.dashboard_stats(), super().dashboard_stats, ttl=self._ttls.dashboard_stats
        )
