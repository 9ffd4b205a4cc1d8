"""``CacheWarmupService``: fill the entries every admin screen starts with."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from hita.domain.users import DEFAULT_PAGE_SIZE, UserListQuery
from hita.services.cached_users import CachedUserService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WarmupResult:
    warmed: tuple[str, ...]
    seconds: float


class CacheWarmupService:
    def __init__(self, users: CachedUserService) -> None:
        self._users = users

    async def warm_essential_caches(self) -> WarmupResult:
        """User stats, dashboard stats, the first user list page and the first
        superadmin page, concurrently; each is loaded only if it is missing."""
        started = time.perf_counter()
        await asyncio.gather(
            self._users.user_stats(),
            self._users.dashboard_stats(),
            self._users.list_users(UserListQuery()),
            self._users.superadmin_list(1, DEFAULT_PAGE_SIZE),
        )
        result = WarmupResult(
            ("user_stats", "dashboard_stats", "user_list", "superadmin_user_list"),
            time.perf_counter() - started,
        )
        log.info("essential caches warmed in %.0f ms", result.seconds * 1000)
        return result
