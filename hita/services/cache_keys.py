"""``CacheKeys``: the seed's five key families, and what a change invalidates.

| family | key | invalidated |
| --- | --- | --- |
| user details | ``user_details:{user_id}`` | by deleting that one key |
| user lists | ``user_list:*`` | the whole namespace, in O(1) |
| user stats | ``user_stats:*`` | the whole namespace, in O(1) |
| dashboard stats | ``dashboard_stats:*`` | the whole namespace, in O(1) |
| superadmin lists | ``superadmin_user_list:*`` | the whole namespace, in O(1) |

What a change touched (``Scope``) decides which families it invalidates, in
one mapping, ``FAMILIES``: the route table (a 2xx of a mutating route), the
outbox's triggers (their ``scope`` column names the same two) and the CLI
read it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Final

from hita.cache.client import RedisCache
from hita.cache.keys import Key, Namespace, NamespacedKey
from hita.cache.pending import Invalidation
from hita.constants import (
    CACHE_TYPES,
    DASHBOARD_STATS,
    NAMESPACES,
    SUPERADMIN_USER_LIST,
    USER_DETAILS,
    USER_LIST,
    USER_STATS,
)
from hita.domain.ids import is_user_id
from hita.domain.users import UserListQuery

KEYS_KEPT: Final = 10_000  # keys of each kind remembered, most recently used first


class Scope(StrEnum):
    """What a change touched, named as migration 0005's triggers name it."""

    ALL = "all"  # a user's row or points: everything that shows the user
    DETAILS = "details"  # only the user's own details (a login, a permission)


FAMILIES: Final[Mapping[Scope, frozenset[str]]] = {
    Scope.ALL: frozenset((*NAMESPACES, USER_DETAILS)),
    Scope.DETAILS: frozenset({USER_DETAILS}),
}


class CacheKeys:
    def __init__(self, cache: RedisCache) -> None:
        self.cache = cache
        self._builder = cache.keys
        # Every request builds a key or two: the recent ones are kept, built once.
        keep = functools.lru_cache(maxsize=KEYS_KEPT)
        self.user_details = keep(self._user_details)
        self.user_list = keep(self._user_list)
        self.superadmin_user_list = keep(self._superadmin_user_list)
        self._user_stats = self._builder.namespaced(USER_STATS)
        self._dashboard_stats = self._builder.namespaced(DASHBOARD_STATS)

    def _user_details(self, user_id: str) -> Key:
        return self._builder.key(USER_DETAILS, user_id)

    def _user_list(self, query: UserListQuery) -> NamespacedKey:
        return self._builder.namespaced(USER_LIST, **dataclasses.asdict(query))

    def user_stats(self) -> NamespacedKey:
        return self._user_stats

    def dashboard_stats(self) -> NamespacedKey:
        return self._dashboard_stats

    def _superadmin_user_list(self, page: int, page_size: int) -> NamespacedKey:
        return self._builder.namespaced(SUPERADMIN_USER_LIST, page=page, page_size=page_size)

    def namespace(self, name: str) -> Namespace:
        return self._builder.namespace(name)

    def pattern(self, cache_type: str) -> str:
        return self._builder.pattern(cache_type)

    @property
    def patterns(self) -> dict[str, str]:
        """The seed's patterns: ``user_stats:*``, ``user_list:*``..."""
        return {name: self.pattern(name) for name in CACHE_TYPES}

    def invalidation(self, cache_types: Iterable[str], user_id: str | None = None) -> Invalidation:
        """What invalidating ``cache_types`` means: namespaces (O(1) each) and,
        if ``user_details`` is among them, that one user's details (or, with no
        user id, every user's: a SCAN of the family)."""
        types = set(cache_types)
        namespaces = tuple(self.namespace(name) for name in NAMESPACES if name in types)
        keys: tuple[Key, ...] = ()
        patterns: tuple[str, ...] = ()
        if USER_DETAILS in types:
            if user_id is not None:
                keys = (self.user_details(user_id),)
            else:
                patterns = (self.pattern(USER_DETAILS),)
        return Invalidation(namespaces, keys, patterns)

    def invalidation_for_changes(
        self, changes: Iterable[tuple[Sequence[str] | None, bool]]
    ) -> Invalidation:
        """One invalidation covering committed changes, each ``(user ids or
        None for every user, only their details?)``."""
        families: set[str] = set()
        user_ids: set[str] = set()
        every_user = False
        for ids, details_only in changes:
            families.update(FAMILIES[Scope.DETAILS if details_only else Scope.ALL])
            if ids is None:
                every_user = True
            else:
                user_ids.update(i for i in ids if is_user_id(i))
        return Invalidation(
            tuple(self.namespace(name) for name in NAMESPACES if name in families),
            () if every_user else tuple(self.user_details(i) for i in sorted(user_ids)),
            (self.pattern(USER_DETAILS),) if every_user else (),
        )

    async def invalidate(
        self, cache_types: Iterable[str], user_id: str | None = None, *, cause: str = "code"
    ) -> bool:
        """Invalidate ``cache_types`` (see ``invalidation``) in one round trip,
        retried within the invalidation budget. False: Redis did not
        acknowledge it in time; it stays suspect here and is applied later."""
        invalidation = self.invalidation(cache_types, user_id)
        return await self.cache.invalidate(
            invalidation.namespaces, invalidation.keys, invalidation.patterns, cause=cause
        )

    async def invalidate_user_caches(
        self, user_id: str | None = None, *, cause: str = "code"
    ) -> bool:
        """The seed's ``CacheKeys.invalidate_user_caches``: everything that shows
        this user (or every user when ``user_id`` is None)."""
        return await self.invalidate(FAMILIES[Scope.ALL], user_id, cause=cause)
