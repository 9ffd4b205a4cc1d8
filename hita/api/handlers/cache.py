"""``/v1.0/cache/...``: the seed's cache management endpoints.

Bodies as in the seed (see ``CacheAdmin``); when Redis is unreachable each one
answers 503 ``{"success": false, "error": "Redis cache not available",
"cache_available": false}``. Who may call each: the route table
(``hita.api.routes``).
"""

from __future__ import annotations

from aiohttp import web

from hita.api import schemas
from hita.api.responses import json_ok
from hita.appkeys import CACHE_ADMIN


async def health(request: web.Request) -> web.Response:
    """``{success, cache_info: {status, redis_version, used_memory,
    connected_clients, hit_rate}}``."""
    return json_ok(await request.app[CACHE_ADMIN].health())


async def detailed_health(request: web.Request) -> web.Response:
    """``{success, timestamp, cache_info, detailed_statistics: {key_counts,
    memory_usage, connections, performance, redis_version, redis_mode,
    service_statistics}}``."""
    return json_ok(await request.app[CACHE_ADMIN].detailed_health())


async def clear(request: web.Request) -> web.Response:
    """Removes the five families and the decorator keys (never FLUSHDB)."""
    deleted = await request.app[CACHE_ADMIN].clear()
    return json_ok({"message": "All user caches cleared successfully", "keys_deleted": deleted})


async def clear_user(request: web.Request) -> web.Response:
    """Removes that user's cached details."""
    user_id = schemas.user_id_param(request)
    await request.app[CACHE_ADMIN].clear_user(user_id)
    return json_ok({"message": f"Cache cleared for user {user_id}"})


async def warm(request: web.Request) -> web.Response:
    """Fills user stats, dashboard stats and the first list pages."""
    result = await request.app[CACHE_ADMIN].warm()
    return json_ok(
        {
            "message": "Essential caches warmed successfully",
            "warmed": list(result.warmed),
            "duration_ms": round(result.seconds * 1000, 1),
        }
    )


async def stats(request: web.Request) -> web.Response:
    """``{success, cache_info: {status, redis_version, hit_rate},
    key_counts, service_statistics}``."""
    return json_ok(await request.app[CACHE_ADMIN].stats())


async def self_test(request: web.Request) -> web.Response:
    """``{success, test_results: {cache_available, set_operation,
    get_operation, exists_operation, delete_operation, get_after_delete}}``."""
    return json_ok(await request.app[CACHE_ADMIN].self_test())
