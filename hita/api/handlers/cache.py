"""``/v1.0/cache/...``: the seed's cache management endpoints.

Bodies as in the seed (see ``CacheAdmin``); when Redis is unreachable each one
answers 503 ``{"success": false, "error": "Redis cache not available",
"cache_available": false}``. Who may call each: the route table
(``hita.api.routes``).
"""

from __future__ import annotations

from aiohttp import web

from hita.api import schemas
from hita.api.responses import json_error, json_ok
from hita.appkeys import CACHE_ADMIN, INSTANCE
from hita.errors import CacheUnavailable


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
    """Removes the five families and the decorator keys, or with
    ``?family=`` one family (never FLUSHDB)."""
    family = schemas.load(schemas.CACHE_CLEAR_QUERY, schemas.query_params(request)).get("family")
    deleted = await request.app[CACHE_ADMIN].clear(family)
    message = (
        "All user caches cleared successfully"
        if family is None
        else f"Cache family {family} cleared successfully"
    )
    return json_ok({"message": message, "keys_deleted": deleted})


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
    key_counts, service_statistics, redis_memory, instance}``; ``instance`` (what
    this instance sees: L1, coherence, breaker...) is in the 503 too."""
    view = request.app[INSTANCE]
    try:
        body = await request.app[CACHE_ADMIN].stats()
    except CacheUnavailable as exc:
        instance = await view.snapshot()
        return json_error(503, exc.public_message, cache_available=False, instance=instance)
    return json_ok({**body, "instance": await view.snapshot()})


async def self_test(request: web.Request) -> web.Response:
    """``{success, test_results: {cache_available, set_operation,
    get_operation, exists_operation, delete_operation, get_after_delete}}``."""
    return json_ok(await request.app[CACHE_ADMIN].self_test())
