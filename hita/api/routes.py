"""Every route of the service, in one table.

Static paths (``/user/list``, ``/user/stats``) come before ``/user/{user_id}``.
"""

from __future__ import annotations

from aiohttp import web

from hita.api import health, metrics, openapi
from hita.api.handlers import auth, cache, permissions, points, stats, users
from hita.constants import API_PREFIX


def setup_routes(app: web.Application) -> None:
    p = API_PREFIX
    app.router.add_routes(
        [
            web.get(f"{p}/health", health.health, allow_head=False),
            web.get(f"{p}/health/live", health.live, allow_head=False),
            web.post(f"{p}/auth/login", auth.login),
            web.post(f"{p}/user/create", users.create_user),
            web.get(f"{p}/user/list", users.list_users, allow_head=False),
            web.get(f"{p}/user/stats", stats.user_stats, allow_head=False),
            web.put(f"{p}/user/update/{{user_id}}", users.put_user),
            web.patch(f"{p}/user/update/{{user_id}}", users.patch_user),
            web.delete(f"{p}/user/delete/{{user_id}}", users.delete_user),
            web.post(f"{p}/user/{{user_id}}/activate", users.activate_user),
            web.post(f"{p}/user/{{user_id}}/deactivate", users.deactivate_user),
            web.get(f"{p}/user/{{user_id}}", users.get_user, allow_head=False),
            web.get(f"{p}/dashboard/stats", stats.dashboard_stats, allow_head=False),
            web.get(f"{p}/superadmin/users", users.superadmin_users, allow_head=False),
            web.post(f"{p}/points/{{user_id}}/add", points.add_points),
            web.post(f"{p}/points/{{user_id}}/redeem", points.redeem_points),
            web.get(f"{p}/points/{{user_id}}/history", points.points_history, allow_head=False),
            web.get(f"{p}/permissions/{{user_id}}", permissions.get_permissions, allow_head=False),
            web.post(f"{p}/permissions/{{user_id}}/grant", permissions.grant_permission),
            web.post(f"{p}/permissions/{{user_id}}/revoke", permissions.revoke_permission),
            web.get(f"{p}/cache/health", cache.health, allow_head=False),
            web.get(f"{p}/cache/health/detailed", cache.detailed_health, allow_head=False),
            web.post(f"{p}/cache/clear", cache.clear),
            web.post(f"{p}/cache/clear/user/{{user_id}}", cache.clear_user),
            web.post(f"{p}/cache/warm", cache.warm),
            web.get(f"{p}/cache/stats", cache.stats, allow_head=False),
            web.get(f"{p}/cache/test", cache.self_test, allow_head=False),
            web.get("/metrics", metrics.metrics, allow_head=False),
            web.get(f"{p}/openapi.json", openapi.openapi_document, allow_head=False),
        ]
    )
