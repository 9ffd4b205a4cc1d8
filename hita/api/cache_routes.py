"""The cache management routes and the cache console, in the route table
(``hita.api.routes``) at their place: the seed's ``/v1.0/cache/...``
endpoints, and the console's page and static files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import hdrs

from hita.api import console, schemas
from hita.api import openapi_instance as instance
from hita.api import openapi_schemas as out
from hita.api.handlers import cache
from hita.api.route import ADMIN, PUBLIC, Doc, Route
from hita.constants import API_PREFIX

GET: Final = hdrs.METH_GET
POST: Final = hdrs.METH_POST
_P: Final = API_PREFIX
_CONSOLE_HEADERS: Final = {
    "Content-Security-Policy": {
        "required": True,
        "description": "Only this service's own scripts, styles and data; no inline code.",
        "schema": {"type": "string", "enum": [console.CONTENT_SECURITY_POLICY]},
    },
}

CACHE_ROUTES: Final[Sequence[Route]] = (
    Route(
        GET,
        f"{_P}/cache/health",
        cache.health,
        PUBLIC,
        Doc("cache", "Cache health", out.CacheHealthSchema, errors=frozenset({503})),
    ),
    Route(
        GET,
        f"{_P}/cache/health/detailed",
        cache.detailed_health,
        ADMIN,
        Doc("cache", "Detailed cache health and statistics", out.CacheDetailedHealthSchema),
    ),
    Route(
        POST,
        f"{_P}/cache/clear",
        cache.clear,
        ADMIN,
        Doc(
            "cache",
            "Remove every cache entry of the service, or of one family (never FLUSHDB)",
            out.CacheClearedSchema,
            query=schemas.CACHE_CLEAR_QUERY,
            notes="`family` (one of the five cache types) limits it to that family.",
        ),
    ),
    Route(
        POST,
        f"{_P}/cache/clear/user/{{user_id}}",
        cache.clear_user,
        ADMIN,
        Doc("cache", "Remove one user's cache entries", out.MessageSchema),
    ),
    Route(
        POST,
        f"{_P}/cache/warm",
        cache.warm,
        ADMIN,
        Doc("cache", "Fill the essential caches", out.CacheWarmedSchema),
    ),
    Route(
        GET,
        f"{_P}/cache/stats",
        cache.stats,
        ADMIN,
        Doc(
            "cache",
            "Cache statistics, and what this instance sees of its cache",
            instance.CacheStatsSchema,
            unavailable=instance.CacheStatsUnavailableSchema,
        ),
    ),
    Route(
        GET,
        f"{_P}/cache/test",
        cache.self_test,
        ADMIN,
        Doc("cache", "Set, get, exists and delete a probe key", out.CacheTestSchema),
    ),
    Route(
        GET,
        f"{_P}/cache/console",
        console.page,
        PUBLIC,  # a page with no data: the data calls need an admin's token
        Doc(
            "operations",
            "The cache console (a page with no data: it asks for an admin's token)",
            {"text/html": {"schema": {"type": "string"}}},
            headers=_CONSOLE_HEADERS,
            notes="Every figure it shows comes from `GET /v1.0/cache/stats`, called with the "
            "token; a token without admin rights gets the login form back.",
        ),
    ),
    Route(
        GET,
        f"{_P}/cache/console/{{asset}}",
        console.asset,
        PUBLIC,
        Doc(
            "operations",
            "A static file of the cache console",
            {kind: {"schema": {"type": "string"}} for kind in sorted(set(console.ASSETS.values()))},
            headers=_CONSOLE_HEADERS,
            errors=frozenset({404}),
        ),
    ),
)
