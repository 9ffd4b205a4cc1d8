"""The service's OpenAPI 3 document, built with apispec from the marshmallow schemas.

``build_document(router)`` walks the real router: each route is described by
the entry of its handler in ``OPERATIONS``, and a route without one is an
error, so the document lists exactly the routes the service answers (HEAD,
GET without the body, is implicit). The error statuses of an operation follow
from what it does (every route but ``/metrics``: 503 when overloaded, with
``Retry-After``; a token: 401, 403 and 503; a path id or a body: 400; a
body: 413) plus those the entry names; a 422 only from the business rules it
names, marked ``x-business-rule``. Security comes from
``hita.api.auth.PUBLIC_PATHS``: a public route has ``security: []``, every
other one needs the bearer token. ``LINKS`` lead from a user to what is done
with it, for clients and for schemathesis's stateful phase.

Every constraint the schemas enforce is stated: apispec converts lengths,
ranges and ``Regexp`` patterns; ``_no_nul`` adds the pattern of ``Text``
(no NUL), ``_Plugin`` a schema's ``MIN_PROPERTIES``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
from aiohttp import hdrs, web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from hita import __version__
from hita.api import console, health, metrics, schemas
from hita.api import openapi_instance as instance
from hita.api import openapi_schemas as out
from hita.api.admission import ALWAYS_ADMITTED
from hita.api.auth import is_public
from hita.api.etag import CACHED_READ_ROUTES
from hita.api.handlers import auth, cache, permissions, points, stats, users
from hita.api.typedefs import Handler
from hita.appkeys import OPENAPI
from hita.domain.ids import USER_ID_PATTERN
from hita.domain.roles import Role
from hita.domain.users import MAX_LIST_OFFSET_ROWS, MAX_PAGE

OPENAPI_VERSION: Final = "3.0.3"
JSON: Final = "application/json"
BEARER_AUTH: Final = "bearerAuth"


class UndocumentedRoute(LookupError):
    """A route the document cannot describe: no entry in ``OPERATIONS``, a path
    parameter not in ``PATH_PARAMETERS``, or an entry whose access disagrees
    with ``PUBLIC_PATHS``."""


async def openapi_document(request: web.Request) -> web.Response:
    """Anyone. This document."""
    return web.Response(body=request.app[OPENAPI], content_type=JSON, charset="utf-8")


@dataclass(frozen=True, slots=True)
class Operation:
    tag: str
    summary: str
    ok: Mapping[str, Any]  # the success response's content, by media type
    role: Role | None = None  # the least role allowed; None: anyone (a public path)
    self_allowed: bool = False  # the user named in the path may call it too
    body: Schema | None = None
    query: Schema | None = None
    status: int = 200
    errors: frozenset[int] = frozenset()  # beyond those that follow from the above
    unavailable: type[Schema] | None = None  # a 503 body of its own, not the shared one
    headers: Mapping[str, Any] | None = None  # the success response's headers
    notes: str = ""
    # Business rules a well-formed request may still break (422): they depend on who
    # calls or on the stored data, so no schema can state them.
    rules: tuple[str, ...] = ()

    def error_statuses(self, path: str) -> frozenset[int]:
        statuses = set(self.errors)
        if self.rules:
            statuses.add(422)
        if path not in ALWAYS_ADMITTED:
            statuses.add(503)  # admission control: overloaded, with Retry-After
        if self.role is not None:
            statuses |= {401, 403, 503}  # the token's user is looked up in PostgreSQL
        if "{" in path or self.body is not None or self.query is not None:
            statuses.add(400)
        if self.body is not None:
            statuses.add(413)
        return frozenset(statuses)

    def who(self) -> str:
        if self.role is None:
            return "Anyone, without a token."
        caller = {Role.ADMIN: "An admin", Role.SUPERADMIN: "A superadmin"}[self.role]
        return f"The user itself, or {caller.lower()}." if self.self_allowed else f"{caller}."


def _json(schema: type[Schema]) -> Mapping[str, Any]:
    return {JSON: {"schema": schema}}


def _admin(tag: str, summary: str, ok: type[Schema], **kwargs: Any) -> Operation:
    return Operation(tag, summary, _json(ok), role=Role.ADMIN, **kwargs)


def _self_or_admin(tag: str, summary: str, ok: type[Schema], **kwargs: Any) -> Operation:
    return Operation(tag, summary, _json(ok), role=Role.ADMIN, self_allowed=True, **kwargs)


def _update(summary: str, body: Schema) -> Operation:
    return _self_or_admin(
        "users",
        summary,
        out.UserBodySchema,
        body=body,
        errors=frozenset({404, 409}),
        notes="A plain user may change only its own full_name, email and password.",
        rules=(_OWN_ROLE, _DEACTIVATE_SELF),
    )


_NO_USER: Final = frozenset({404})
_OWN_ROLE: Final = "Nobody may change their own role."
_DEACTIVATE_SELF: Final = "Nobody may deactivate themselves."
_PAGE_DEPTH: Final = (
    f"`page` is at most {MAX_PAGE} whatever `page_size`, so that no page starts more "
    f"than {MAX_LIST_OFFSET_ROWS} rows deep (narrow the filters to see further)."
)
_CACHE_UNAVAILABLE: Final = frozenset({503})
_NO_SUCH_THING: Final = frozenset({404})
_CONSOLE_HEADERS: Final = {
    "Content-Security-Policy": {
        "required": True,
        "description": "Only this service's own scripts, styles and data; no inline code.",
        "schema": {"type": "string", "enum": [console.CONTENT_SECURITY_POLICY]},
    },
}
_SUPERADMIN_TARGET: Final = "Only a superadmin may change a superadmin's (403 for an admin)."

OPERATIONS: Final[Mapping[Handler, Operation]] = {
    health.health: Operation(
        "operations",
        "Readiness for a load balancer, with the state of PostgreSQL and Redis",
        _json(out.HealthSchema),
        errors=frozenset({503}),
        unavailable=out.HealthUnavailableSchema,
        notes="200 while PostgreSQL answers (`status` is `degraded` when only Redis is "
        "down: every route but the cache endpoints still works); 503 when PostgreSQL "
        "cannot be used, so that a load balancer sends traffic elsewhere. "
        "`notifications` is `deaf` when this instance's LISTEN does not deliver (a pooler "
        "in transaction mode): answers are unchanged, writers that wait for the other "
        "instances wait for their periodic renewals.",
    ),
    health.live: Operation(
        "operations",
        "Liveness: the process answers HTTP (no dependency is asked)",
        _json(out.LivenessSchema),
        notes="For an orchestrator's liveness probe: 200 whenever the process serves.",
    ),
    auth.login: Operation(
        "auth",
        "Log in with a username and password, for an access token",
        _json(out.TokenSchema),
        body=schemas.LOGIN,
        errors=frozenset({401, 403, 429, 503}),
        notes="401 for a wrong username or password, 403 for a deactivated user; 429 with "
        "`Retry-After` (seconds) after too many failed logins for the username or from the "
        "client address in a window (`LOGIN_MAX_FAILURES_PER_USER`, "
        "`LOGIN_MAX_FAILURES_PER_ADDRESS`, `LOGIN_THROTTLE_WINDOW_S`), whatever the password.",
    ),
    users.create_user: _admin(
        "users",
        "Create a user",
        out.UserBodySchema,
        body=schemas.CREATE_USER,
        status=201,
        errors=frozenset({409}),
        notes="409 when the username or email is taken; only a superadmin may create one.",
    ),
    users.list_users: _admin(
        "users",
        "List users, newest first (superadmins are listed only by /superadmin/users)",
        out.UserListSchema,
        query=schemas.USER_LIST_QUERY,
        notes=_PAGE_DEPTH,
    ),
    stats.user_stats: _admin("stats", "User statistics", out.UserStatsBodySchema),
    users.put_user: _update(
        "Replace every updatable field of a user (password optional)", schemas.PUT_USER
    ),
    users.patch_user: _update(
        "Change the given fields of a user (at least one)", schemas.PATCH_USER
    ),
    users.delete_user: _admin(
        "users",
        "Delete a user",
        out.UserDeletedSchema,
        errors=_NO_USER,
        rules=("Nobody may delete themselves.",),
    ),
    users.activate_user: _admin("users", "Activate a user", out.UserBodySchema, errors=_NO_USER),
    users.deactivate_user: _admin(
        "users",
        "Deactivate a user; its tokens stop working at once",
        out.UserBodySchema,
        errors=_NO_USER,
        rules=(_DEACTIVATE_SELF,),
    ),
    users.get_user: _self_or_admin("users", "A user", out.UserBodySchema, errors=_NO_USER),
    stats.dashboard_stats: _admin("stats", "Dashboard statistics", out.DashboardStatsBodySchema),
    users.superadmin_users: Operation(
        "users",
        "List every user, superadmins included, newest first",
        _json(out.UserListSchema),
        role=Role.SUPERADMIN,
        query=schemas.PAGE_QUERY,
        notes=_PAGE_DEPTH,
    ),
    points.add_points: _admin(
        "points",
        "Add loyalty points",
        out.PointsChangeSchema,
        body=schemas.POINTS,
        errors=_NO_USER,
        notes=_SUPERADMIN_TARGET,
    ),
    points.redeem_points: _self_or_admin(
        "points",
        "Redeem loyalty points",
        out.PointsChangeSchema,
        body=schemas.POINTS,
        errors=_NO_USER,
        rules=("The amount may not be above the balance.",),
        notes=_SUPERADMIN_TARGET,
    ),
    points.points_history: _self_or_admin(
        "points",
        "The points ledger of a user, newest first",
        out.PointsHistorySchema,
        query=schemas.PAGE_QUERY,
        errors=_NO_USER,
        notes=_PAGE_DEPTH,
    ),
    permissions.get_permissions: _self_or_admin(
        "permissions", "A user's permissions", out.PermissionsSchema, errors=_NO_USER
    ),
    permissions.grant_permission: _admin(
        "permissions",
        "Grant a permission (granting one held already changes nothing)",
        out.PermissionsSchema,
        body=schemas.PERMISSION,
        errors=_NO_USER,
        notes=_SUPERADMIN_TARGET,
    ),
    permissions.revoke_permission: _admin(
        "permissions",
        "Revoke a permission (revoking one not held changes nothing)",
        out.PermissionsSchema,
        body=schemas.PERMISSION,
        errors=_NO_USER,
        notes=_SUPERADMIN_TARGET,
    ),
    cache.health: Operation(
        "cache", "Cache health", _json(out.CacheHealthSchema), errors=_CACHE_UNAVAILABLE
    ),
    cache.detailed_health: _admin(
        "cache", "Detailed cache health and statistics", out.CacheDetailedHealthSchema
    ),
    cache.clear: _admin(
        "cache",
        "Remove every cache entry of the service, or of one family (never FLUSHDB)",
        out.CacheClearedSchema,
        query=schemas.CACHE_CLEAR_QUERY,
        notes="`family` (one of the five cache types) limits it to that family.",
    ),
    cache.clear_user: _admin("cache", "Remove one user's cache entries", out.MessageSchema),
    cache.warm: _admin("cache", "Fill the essential caches", out.CacheWarmedSchema),
    cache.stats: _admin(
        "cache",
        "Cache statistics, and what this instance sees of its cache",
        instance.CacheStatsSchema,
        unavailable=instance.CacheStatsUnavailableSchema,
    ),
    cache.self_test: _admin(
        "cache", "Set, get, exists and delete a probe key", out.CacheTestSchema
    ),
    console.page: Operation(
        "operations",
        "The cache console (a page with no data: it asks for an admin's token)",
        {"text/html": {"schema": {"type": "string"}}},
        headers=_CONSOLE_HEADERS,
        notes="Every figure it shows comes from `GET /v1.0/cache/stats`, called with the "
        "token; a token without admin rights gets the login form back.",
    ),
    console.asset: Operation(
        "operations",
        "A static file of the cache console",
        {kind: {"schema": {"type": "string"}} for kind in sorted(set(console.ASSETS.values()))},
        headers=_CONSOLE_HEADERS,
        errors=_NO_SUCH_THING,
    ),
    metrics.metrics: Operation(
        "operations",
        "Prometheus metrics",
        {"text/plain": {"schema": {"type": "string"}}},
        notes="The Prometheus text exposition format.",
    ),
    openapi_document: Operation(
        "operations", "This OpenAPI document", {JSON: {"schema": {"type": "object"}}}
    ),
}

# What a client does next with the user a success answer names, as OpenAPI links
# (schemathesis's stateful phase follows them): a new user is read, a user read
# is changed, deleted, given points or permissions.
_USER_ID: Final = "$response.body#/user/id"
_ON_A_USER: Final = (
    users.put_user,
    users.patch_user,
    users.delete_user,
    users.activate_user,
    users.deactivate_user,
    points.add_points,
    points.redeem_points,
    points.points_history,
    permissions.get_permissions,
    permissions.grant_permission,
    permissions.revoke_permission,
)
LINKS: Final[Mapping[Handler, tuple[str, tuple[Handler, ...]]]] = {
    users.create_user: (_USER_ID, (users.get_user, *_ON_A_USER)),
    users.get_user: (_USER_ID, _ON_A_USER),
}

PATH_PARAMETERS: Final[Mapping[str, dict[str, Any]]] = {
    "asset": {
        "name": "asset",
        "description": "The name of one of the console's files.",
        "schema": {"type": "string", "enum": sorted(console.ASSETS)},
        "example": "console.js",
    },
    "user_id": {
        "name": "user_id",
        "description": "A 10-digit user id such as 5779356081.",
        "schema": {"type": "string", "pattern": f"^{USER_ID_PATTERN}$"},
        "example": "5779356081",
    },
}


def _error(description: str, schema: type[Schema] = out.ErrorSchema) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


ERROR_RESPONSES: Final[Mapping[int, tuple[str, dict[str, Any]]]] = {
    400: (
        "InvalidInput",
        _error("Invalid input; `details` holds the messages per field.", out.InvalidInputSchema),
    ),
    401: (
        "NotAuthenticated",
        {
            **_error("No token, or a malformed, invalid or expired one."),
            "headers": {
                "WWW-Authenticate": {"required": True, "schema": {"type": "string"}},
            },
        },
    ),
    403: ("PermissionDenied", _error("The caller may not do this.")),
    404: ("NotFound", _error("No such user (or, for the console, no such file).")),
    409: ("Conflict", _error("The username or email is taken.")),
    413: ("PayloadTooLarge", _error("The request body is too large.")),
    429: (
        "TooManyRequests",
        {
            **_error("Too many failed logins; `Retry-After` says when to try again."),
            "headers": {
                "Retry-After": {
                    "required": True,
                    "description": "Seconds until the throttling window closes.",
                    "schema": {"type": "integer", "minimum": 1},
                },
            },
        },
    ),
    503: (
        "Unavailable",
        {
            **_error(
                "PostgreSQL or Redis cannot be reached (the cache endpoints add "
                "`cache_available: false`, and the detailed cache health Redis's own "
                "`reason`), or the instance is overloaded: `Service overloaded; retry "
                "shortly`, with `Retry-After`.",
                out.UnavailableSchema,
            ),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait; sent with an overloaded answer.",
                    "required": False,
                    "schema": {"type": "integer"},
                },
            },
        },
    ),
}

_PATH_PARAMETER_RE: Final = re.compile(r"\{([^}]+)\}")
_ANCHORS: Final = ((r"\A", "^"), (r"\Z", "$"))


def _ecma_anchors(
    self: Any, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """Python's ``\\A`` and ``\\Z`` anchors as ECMA 262's ``^`` and ``$``."""
    pattern = ret.get("pattern")
    return {"pattern": _ecma(pattern)} if isinstance(pattern, str) else {}


def _ecma(pattern: str) -> str:
    for python, ecma in _ANCHORS:
        pattern = pattern.replace(python, ecma)
    return pattern


def _no_nul(
    self: Any, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """``schemas.Text`` refuses NUL; a pattern of its own already does."""
    if not isinstance(field, schemas.Text) or "pattern" in ret:
        return {}
    return {"pattern": _ecma(schemas.NO_NUL_PATTERN)}


class _Plugin(MarshmallowPlugin):
    """apispec's plugin, plus what a schema says of itself as a whole:
    ``MIN_PROPERTIES`` (a body that must name at least that many fields)."""

    # MarshmallowPlugin's own signature (it adds ``schema`` to BasePlugin's).
    def schema_helper(  # type: ignore[override]
        self, name: str, _: Any, schema: Any = None, **kwargs: Any
    ) -> dict[str, Any] | None:
        json_schema: dict[str, Any] | None = super().schema_helper(  # type: ignore[no-untyped-call]
            name, _, schema, **kwargs
        )
        min_properties = getattr(schema, "MIN_PROPERTIES", None)
        if json_schema is not None and min_properties is not None:
            json_schema["minProperties"] = min_properties
        return json_schema


def _allowed_choices(
    self: Any, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """An Enum field narrowed by ``OneOf``: apispec lists every member otherwise."""
    if not isinstance(field, fields.Enum) or "enum" not in ret:
        return {}
    allowed = [c for v in field.validators for c in getattr(v, "choices", ())]
    if not allowed:
        return {}
    values = {field._serialize(choice, None, None) for choice in allowed}
    return {"enum": [value for value in ret["enum"] if value in values]}


def _new_spec() -> APISpec:
    plugin = _Plugin()
    spec = APISpec(
        title="HITA",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={
            "description": "Hotel user accounts behind a Redis cache in front of PostgreSQL. "
            "Every error body is `{success: false, error, details?}`; an unknown path "
            "answers 404, and a known path with another method 405 with an `Allow` that "
            "lists exactly the methods of the path. Every GET also answers HEAD: the same "
            "status and headers, without the body."
        },
    )
    assert plugin.converter is not None
    # apispec leaves this method unannotated.
    plugin.converter.add_attribute_function(_ecma_anchors)  # type: ignore[no-untyped-call]
    plugin.converter.add_attribute_function(_allowed_choices)  # type: ignore[no-untyped-call]
    plugin.converter.add_attribute_function(_no_nul)  # type: ignore[no-untyped-call]
    spec.components.security_scheme(
        BEARER_AUTH, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    for name, parameter in PATH_PARAMETERS.items():
        spec.components.parameter(name, "path", parameter, lazy=True)
    for name, response in ERROR_RESPONSES.values():
        spec.components.response(name, response, lazy=True)
    return spec


BUSINESS_RULE: Final = "x-business-rule"


def _broken_rule(op: Operation) -> dict[str, Any]:
    """The 422 of an operation, naming its rules; marked ``x-business-rule`` so
    that tools can tell it from a refusal of the request's shape (schemathesis.toml
    lets such operations answer it to requests the document calls valid)."""
    rules = " ".join(op.rules)
    return {
        **_error(f"A business rule forbids it; nothing changed. {rules}"),
        BUSINESS_RULE: True,
    }


def _operation_id(handler: Handler) -> str:
    return f"{handler.__module__.rsplit('.', 1)[-1]}_{handler.__name__}"


_ETAG_HEADER: Final = {
    "description": "A strong entity tag of this answer's body (BLAKE2b-128 of its bytes).",
    "required": True,
    "schema": {"type": "string", "pattern": '^"[0-9a-f]{32}"$'},
}
_IF_NONE_MATCH: Final = {
    "in": "header",
    "name": "If-None-Match",
    "required": False,
    "description": "Entity tags from earlier answers (or `*`); when one matches the current "
    "answer, 304 with no body. A malformed or over-long value is ignored.",
    "schema": {"type": "string"},
}
_NOT_MODIFIED: Final = {
    "description": "Not modified: the answer still has the tag given in If-None-Match. No body.",
    "headers": {"ETag": _ETAG_HEADER},
}


def _cached_read(method: str, path: str) -> bool:
    return method == "GET" and path in CACHED_READ_ROUTES


def _success(handler: Handler, op: Operation, method: str, path: str) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": op.summary, "content": op.ok}
    if handler in LINKS:
        ok["links"] = _links(*LINKS[handler])
    headers = dict(op.headers or {})
    if _cached_read(method, path):
        headers["ETag"] = _ETAG_HEADER
    if headers:
        ok["headers"] = headers
    return ok


def _operation(handler: Handler, op: Operation, method: str, path: str) -> dict[str, Any]:
    if (op.role is None) != is_public(path):
        raise UndocumentedRoute(f"{path}: PUBLIC_PATHS and OPERATIONS disagree on its access")
    responses: dict[str, Any] = {str(op.status): _success(handler, op, method, path)}
    if _cached_read(method, path):
        responses["304"] = _NOT_MODIFIED
    for status in sorted(op.error_statuses(path)):
        responses[str(status)] = ERROR_RESPONSES[status][0] if status != 422 else _broken_rule(op)
    if op.unavailable is not None:
        responses["503"] = _error(op.unavailable.__doc__ or op.summary, op.unavailable)
    description = f"{op.who()} {op.notes}".strip()
    operation: dict[str, Any] = {
        "operationId": _operation_id(handler),
        "tags": [op.tag],
        "summary": op.summary,
        "description": description,
        "security": [] if op.role is None else [{BEARER_AUTH: []}],
        "responses": responses,
    }
    parameters: list[dict[str, Any]] = []
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})
    if _cached_read(method, path):
        parameters.append(_IF_NONE_MATCH)
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": op.body}}}
    return operation


def _links(user_id: str, targets: tuple[Handler, ...]) -> dict[str, Any]:
    return {
        _operation_id(target): {
            "operationId": _operation_id(target),
            "parameters": {"user_id": user_id},
        }
        for target in targets
    }


def _path_parameters(path: str) -> list[dict[str, Any]] | None:
    names: list[str] = _PATH_PARAMETER_RE.findall(path)
    unknown = [name for name in names if name not in PATH_PARAMETERS]
    if unknown:
        raise UndocumentedRoute(f"{path}: no PATH_PARAMETERS entry for {', '.join(unknown)}")
    # apispec takes a component's name for a reference to it (its annotation says dicts only).
    return cast("list[dict[str, Any]]", names) or None


Route = tuple[str, str, Handler]  # method, path template, handler


def _routes(router: web.UrlDispatcher) -> tuple[Route, ...]:
    """Every route but HEAD: HEAD is GET without the body, implicit in HTTP."""
    routes = []
    for route in router.routes():
        assert route.resource is not None, "every route of the router has a resource"
        if route.method != hdrs.METH_HEAD:
            routes.append((route.method, route.resource.canonical, route.handler))
    return tuple(routes)


def _build(routes: tuple[Route, ...]) -> dict[str, Any]:
    spec = _new_spec()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in routes:
        op = OPERATIONS.get(handler)
        if op is None:
            raise UndocumentedRoute(f"{method} {path}: no entry in OPERATIONS")
        paths.setdefault(path, {})[method.lower()] = _operation(handler, op, method, path)
    routed = {handler for _, _, handler in routes}
    for source, (_, targets) in LINKS.items():
        if source in routed and not routed.issuperset(targets):
            raise UndocumentedRoute(f"{_operation_id(source)}: a link to an operation not routed")
    for path, operations in paths.items():
        spec.path(path=path, operations=operations, parameters=_path_parameters(path))
    return spec.to_dict()


def build_document(router: web.UrlDispatcher) -> dict[str, Any]:
    """The OpenAPI document of exactly the routes of ``router``."""
    return _build(_routes(router))


@functools.cache
def _encoded(routes: tuple[Route, ...]) -> bytes:
    return orjson.dumps(_build(routes))


def document_bytes(router: web.UrlDispatcher) -> bytes:
    """``build_document`` as JSON; built once per set of routes (apps of one
    process share it: each build takes about 20 ms)."""
    return _encoded(_routes(router))
