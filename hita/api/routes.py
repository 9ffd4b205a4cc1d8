"""Every route of the service, in one table: ``ROUTES``.

Each ``Route`` says everything true of it (``hita.api.route``); the router
(``setup_routes``), the auth check and the ETag of the front,
admission control, the invalidation middleware's patterns and the OpenAPI
document are all read from here. Adding a route is one entry and one handler.

The cache management routes and the console sit in ``hita.api.cache_routes``
(``CACHE_ROUTES``), in the table at their place. The router is made from it
by ``hita.api.router``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import hdrs
from marshmallow import Schema

from hita.api import health, metrics, openapi, schemas
from hita.api import openapi_schemas as out
from hita.api.cache_routes import CACHE_ROUTES
from hita.api.handlers import auth, permissions, points, stats, users
from hita.api.route import ADMIN, PUBLIC, SELF_OR_ADMIN, SUPERADMIN, Doc, Route
from hita.constants import API_PREFIX
from hita.domain.users import MAX_LIST_OFFSET_ROWS, MAX_PAGE
from hita.services.cache_keys import Scope

GET: Final = hdrs.METH_GET
POST: Final = hdrs.METH_POST
PUT: Final = hdrs.METH_PUT
PATCH: Final = hdrs.METH_PATCH
DELETE: Final = hdrs.METH_DELETE

_P: Final = API_PREFIX
_NO_USER: Final = frozenset({404})
_OWN_ROLE: Final = "Nobody may change their own role."
_DEACTIVATE_SELF: Final = "Nobody may deactivate themselves."
_PAGE_DEPTH: Final = (
    f"`page` is at most {MAX_PAGE} whatever `page_size`, so that no page starts more "
    f"than {MAX_LIST_OFFSET_ROWS} rows deep (narrow the filters to see further)."
)
_SUPERADMIN_TARGET: Final = "Only a superadmin may change a superadmin's (403 for an admin)."
_SELF_CHANGES: Final = "A plain user may change only its own full_name, email and password."


_KEY_CHARS: Final = "[A-Za-z0-9._:-]{1,128}"
_IDEMPOTENCY_KEY: Final = {
    "in": "header",
    "name": schemas.IDEMPOTENCY_KEY_HEADER,
    "required": False,
    "description": "The client's key for this change (a UUID, say), bare or in double quotes. "
    "A change already made with this key for this user is not made again: it is answered "
    "as it was, with `Idempotent-Replayed: true`. Send the same key when retrying a change "
    "that got no answer.",
    "schema": {"type": "string", "pattern": f'^({_KEY_CHARS}|"{_KEY_CHARS}")$'},
}
_REPLAYED: Final = {
    "Idempotent-Replayed": {
        "description": "`true` when this answer repeats the one given to an earlier request "
        "with the same Idempotency-Key: nothing was changed again.",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    }
}
_KEY_REUSED: Final = "An Idempotency-Key used before for another change of this user's points."


def _update(summary: str, body: Schema) -> Doc:
    return Doc(
        "users",
        summary,
        out.UserBodySchema,
        body=body,
        errors=frozenset({404, 409}),
        notes=_SELF_CHANGES,
        rules=(_OWN_ROLE, _DEACTIVATE_SELF),
    )


ROUTES: Final[Sequence[Route]] = (
    Route(
        GET,
        f"{_P}/health",
        health.health,
        PUBLIC,
        Doc(
            "operations",
            "Readiness for a load balancer, with the state of PostgreSQL and Redis",
            out.HealthSchema,
            errors=frozenset({503}),
            unavailable=out.HealthUnavailableSchema,
            notes="200 while PostgreSQL answers (`status` is `degraded` when only Redis is "
            "down: every route but the cache endpoints still works); 503 when PostgreSQL "
            "cannot be used, so that a load balancer sends traffic elsewhere. "
            "`notifications` is `deaf` when this instance's LISTEN does not deliver (a pooler "
            "in transaction mode): answers are unchanged, writers that wait for the other "
            "instances wait for their periodic renewals.",
        ),
    ),
    Route(
        GET,
        f"{_P}/health/live",
        health.live,
        PUBLIC,
        Doc(
            "operations",
            "Liveness: the process answers HTTP (no dependency is asked)",
            out.LivenessSchema,
            notes="For an orchestrator's liveness probe: 200 whenever the process serves.",
        ),
    ),
    Route(
        POST,
        f"{_P}/auth/login",
        auth.login,
        PUBLIC,
        Doc(
            "auth",
            "Log in with a username and password, for an access token",
            out.TokenSchema,
            body=schemas.LOGIN,
            errors=frozenset({401, 403, 429, 503}),
            notes="401 for a wrong username or password, 403 for a deactivated user; 429 with "
            "`Retry-After` (seconds) after too many failed logins for the username or from "
            "the client address in a window (`LOGIN_MAX_FAILURES_PER_USER`, "
            "`LOGIN_MAX_FAILURES_PER_ADDRESS`, `LOGIN_THROTTLE_WINDOW_S`), whatever the "
            "password.",
        ),
        invalidates=Scope.DETAILS,  # last_login_at
    ),
    Route(
        POST,
        f"{_P}/user/create",
        users.create_user,
        ADMIN,
        Doc(
            "users",
            "Create a user",
            out.UserBodySchema,
            body=schemas.CREATE_USER,
            status=201,
            errors=frozenset({409}),
            notes="409 when the username or email is taken; only a superadmin may create one.",
        ),
        invalidates=Scope.ALL,  # also the new id's details: a "not found" may be cached
    ),
    Route(
        GET,
        f"{_P}/user/list",
        users.list_users,
        ADMIN,
        Doc(
            "users",
            "List users, newest first (superadmins are listed only by /superadmin/users)",
            out.UserListSchema,
            query=schemas.USER_LIST_QUERY,
            notes=_PAGE_DEPTH,
        ),
        cached=True,
        held=users.held_list_users,
    ),
    Route(
        GET,
        f"{_P}/user/stats",
        stats.user_stats,
        ADMIN,
        Doc("stats", "User statistics", out.UserStatsBodySchema),
        cached=True,
        held=stats.held_user_stats,
    ),
    Route(
        GET,
        f"{_P}/user/{{user_id}}",
        users.get_user,
        SELF_OR_ADMIN,
        Doc("users", "A user", out.UserBodySchema, errors=_NO_USER),
        cached=True,  # before /user/{user_id}/...: aiohttp tries that prefix's routes in order
        held=users.held_user,
    ),
    Route(
        PUT,
        f"{_P}/user/update/{{user_id}}",
        users.put_user,
        SELF_OR_ADMIN,
        _update("Replace every updatable field of a user (password optional)", schemas.PUT_USER),
        invalidates=Scope.ALL,
    ),
    Route(
        PATCH,
        f"{_P}/user/update/{{user_id}}",
        users.patch_user,
        SELF_OR_ADMIN,
        _update("Change the given fields of a user (at least one)", schemas.PATCH_USER),
        invalidates=Scope.ALL,
    ),
    Route(
        DELETE,
        f"{_P}/user/delete/{{user_id}}",
        users.delete_user,
        ADMIN,
        Doc(
            "users",
            "Delete a user",
            out.UserDeletedSchema,
            errors=_NO_USER,
            rules=("Nobody may delete themselves.",),
        ),
        invalidates=Scope.ALL,
    ),
    Route(
        POST,
        f"{_P}/user/{{user_id}}/activate",
        users.activate_user,
        ADMIN,
        Doc("users", "Activate a user", out.UserBodySchema, errors=_NO_USER),
        invalidates=Scope.ALL,
    ),
    Route(
        POST,
        f"{_P}/user/{{user_id}}/deactivate",
        users.deactivate_user,
        ADMIN,
        Doc(
            "users",
            "Deactivate a user; its tokens stop working at once",
            out.UserBodySchema,
            errors=_NO_USER,
            rules=(_DEACTIVATE_SELF,),
        ),
        invalidates=Scope.ALL,
    ),
    Route(
        GET,
        f"{_P}/dashboard/stats",
        stats.dashboard_stats,
        ADMIN,
        Doc("stats", "Dashboard statistics", out.DashboardStatsBodySchema),
        cached=True,
        held=stats.held_dashboard_stats,
    ),
    Route(
        GET,
        f"{_P}/superadmin/users",
        users.superadmin_users,
        SUPERADMIN,
        Doc(
            "users",
            "List every user, superadmins included, newest first",
            out.UserListSchema,
            query=schemas.PAGE_QUERY,
            notes=_PAGE_DEPTH,
        ),
        cached=True,
        held=users.held_superadmin_users,
    ),
    Route(
        POST,
        f"{_P}/points/{{user_id}}/add",
        points.add_points,
        ADMIN,
        Doc(
            "points",
            "Add loyalty points",
            out.PointsChangeSchema,
            body=schemas.POINTS,
            errors=_NO_USER,
            headers=_REPLAYED,
            parameters=(_IDEMPOTENCY_KEY,),
            rules=(_KEY_REUSED,),
            notes=_SUPERADMIN_TARGET,
        ),
        invalidates=Scope.ALL,
    ),
    Route(
        POST,
        f"{_P}/points/{{user_id}}/redeem",
        points.redeem_points,
        SELF_OR_ADMIN,
        Doc(
            "points",
            "Redeem loyalty points",
            out.PointsChangeSchema,
            body=schemas.POINTS,
            errors=_NO_USER,
            headers=_REPLAYED,
            parameters=(_IDEMPOTENCY_KEY,),
            rules=("The amount may not be above the balance.", _KEY_REUSED),
            notes=_SUPERADMIN_TARGET,
        ),
        invalidates=Scope.ALL,
    ),
    Route(
        GET,
        f"{_P}/points/{{user_id}}/history",
        points.points_history,
        SELF_OR_ADMIN,
        Doc(
            "points",
            "The points ledger of a user, newest first",
            out.PointsHistorySchema,
            query=schemas.PAGE_QUERY,
            errors=_NO_USER,
            notes=_PAGE_DEPTH,
        ),
    ),
    Route(
        GET,
        f"{_P}/permissions/{{user_id}}",
        permissions.get_permissions,
        SELF_OR_ADMIN,
        Doc("permissions", "A user's permissions", out.PermissionsSchema, errors=_NO_USER),
    ),
    Route(
        POST,
        f"{_P}/permissions/{{user_id}}/grant",
        permissions.grant_permission,
        ADMIN,
        Doc(
            "permissions",
            "Grant a permission (granting one held already changes nothing)",
            out.PermissionsSchema,
            body=schemas.PERMISSION,
            errors=_NO_USER,
            notes=_SUPERADMIN_TARGET,
        ),
        invalidates=Scope.DETAILS,
    ),
    Route(
        POST,
        f"{_P}/permissions/{{user_id}}/revoke",
        permissions.revoke_permission,
        ADMIN,
        Doc(
            "permissions",
            "Revoke a permission (revoking one not held changes nothing)",
            out.PermissionsSchema,
            body=schemas.PERMISSION,
            errors=_NO_USER,
            notes=_SUPERADMIN_TARGET,
        ),
        invalidates=Scope.DETAILS,
    ),
    *CACHE_ROUTES,
    Route(
        GET,
        "/metrics",
        metrics.metrics,
        PUBLIC,
        Doc(
            "operations",
            "Prometheus metrics",
            {"text/plain": {"schema": {"type": "string"}}},
            notes="The Prometheus text exposition format.",
        ),
        always_admitted=True,  # an overloaded instance can still be watched
    ),
    Route(
        GET,
        f"{_P}/openapi.json",
        openapi.openapi_document,
        PUBLIC,
        Doc("operations", "This OpenAPI document", {openapi.JSON: {"schema": {"type": "object"}}}),
    ),
)
