"""Every route of the service, in one table.

Each path is one resource, so a method it lacks is a 405 whose ``Allow`` lists
exactly the methods of that path; every GET also answers HEAD (the same
answer without its body). A path without parameters is a ``FixedResource``:
it answers for itself with every method, so ``GET /v1.0/user/create`` is a
405, never ``/v1.0/user/{user_id}`` with ``create`` for an id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import MatchInfoError, UrlMappingMatchInfo

from hita.api import console, health, metrics, openapi
from hita.api.handlers import auth, cache, permissions, points, stats, users
from hita.api.typedefs import Handler
from hita.constants import API_PREFIX

GET: Final = hdrs.METH_GET
POST: Final = hdrs.METH_POST
PUT: Final = hdrs.METH_PUT
PATCH: Final = hdrs.METH_PATCH
DELETE: Final = hdrs.METH_DELETE

_P: Final = API_PREFIX

ROUTES: Final[Sequence[tuple[str, str, Handler]]] = (
    (GET, f"{_P}/health", health.health),
    (GET, f"{_P}/health/live", health.live),
    (POST, f"{_P}/auth/login", auth.login),
    (POST, f"{_P}/user/create", users.create_user),
    (GET, f"{_P}/user/list", users.list_users),
    (GET, f"{_P}/user/stats", stats.user_stats),
    (PUT, f"{_P}/user/update/{{user_id}}", users.put_user),
    (PATCH, f"{_P}/user/update/{{user_id}}", users.patch_user),
    (DELETE, f"{_P}/user/delete/{{user_id}}", users.delete_user),
    (POST, f"{_P}/user/{{user_id}}/activate", users.activate_user),
    (POST, f"{_P}/user/{{user_id}}/deactivate", users.deactivate_user),
    (GET, f"{_P}/user/{{user_id}}", users.get_user),
    (GET, f"{_P}/dashboard/stats", stats.dashboard_stats),
    (GET, f"{_P}/superadmin/users", users.superadmin_users),
    (POST, f"{_P}/points/{{user_id}}/add", points.add_points),
    (POST, f"{_P}/points/{{user_id}}/redeem", points.redeem_points),
    (GET, f"{_P}/points/{{user_id}}/history", points.points_history),
    (GET, f"{_P}/permissions/{{user_id}}", permissions.get_permissions),
    (POST, f"{_P}/permissions/{{user_id}}/grant", permissions.grant_permission),
    (POST, f"{_P}/permissions/{{user_id}}/revoke", permissions.revoke_permission),
    (GET, f"{_P}/cache/health", cache.health),
    (GET, f"{_P}/cache/health/detailed", cache.detailed_health),
    (POST, f"{_P}/cache/clear", cache.clear),
    (POST, f"{_P}/cache/clear/user/{{user_id}}", cache.clear_user),
    (POST, f"{_P}/cache/warm", cache.warm),
    (GET, f"{_P}/cache/stats", cache.stats),
    (GET, f"{_P}/cache/test", cache.self_test),
    (GET, f"{_P}/cache/console", console.page),
    (GET, f"{_P}/cache/console/{{asset}}", console.asset),
    (GET, "/metrics", metrics.metrics),
    (GET, f"{_P}/openapi.json", openapi.openapi_document),
)


class FixedResource(web.PlainResource):
    """A path without parameters that answers for itself whatever the method:
    one it does not serve is a 405 listing its own methods. aiohttp would go on
    to the parameterised paths beside it and let ``{user_id}`` take the last
    segment (a 400 "Invalid user id" for ``GET /v1.0/user/create``, and an
    ``Allow`` naming the other path's methods)."""

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        match, allowed = await super().resolve(request)
        if match is None and allowed:  # the path is ours, the method is not
            error = web.HTTPMethodNotAllowed(request.method, allowed)
            return MatchInfoError(error), allowed
        return match, allowed


def _resource(router: web.UrlDispatcher, path: str) -> web.Resource:
    for resource in router.resources():
        if isinstance(resource, web.Resource) and resource.canonical == path:
            return resource
    if "{" in path:
        return router.add_resource(path)
    fixed = FixedResource(path)
    router.register_resource(fixed)
    return fixed


def setup_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        resource = _resource(app.router, path)
        resource.add_route(method, handler)
        if method == GET:
            resource.add_route(hdrs.METH_HEAD, handler)
