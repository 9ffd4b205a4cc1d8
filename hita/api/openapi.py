"""The service's OpenAPI 3 document, built with apispec from the marshmallow schemas.

``build_document(routes)`` describes each ``Route`` of the table the router is
made from (``hita.api.routes``), so the document lists exactly the routes the
service answers (HEAD, GET without the body, is implicit). The error statuses
of an operation follow from the route (unless always admitted: 503 when
overloaded, with ``Retry-After``; a token: 401, 403 and 503; a path id or a
body: 400; a body: 413) plus those its ``Doc`` names; a 422 only from the
business rules it names, marked ``x-business-rule``. A public route has
``security: []``, every other one needs the bearer token; a cached read
documents its ``ETag`` and 304. ``LINKS`` lead from a user to what is done
with it, for clients and for schemathesis's stateful phase.

Every constraint the schemas enforce is stated: apispec converts lengths,
ranges and ``Regexp`` patterns; ``_no_nul`` adds the pattern of ``Text``
(no NUL), ``_Plugin`` a schema's ``MIN_PROPERTIES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import orjson
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from hita import __version__
from hita.api import console, schemas
from hita.api import openapi_schemas as out
from hita.api.handlers import permissions, points, users
from hita.api.route import Route
from hita.api.typedefs import Handler
from hita.appkeys import OPENAPI
from hita.domain.ids import USER_ID_PATTERN

OPENAPI_VERSION: Final = "3.0.3"
JSON: Final = "application/json"
BEARER_AUTH: Final = "bearerAuth"


class UndocumentedRoute(LookupError):
    """A route the document cannot describe: a path parameter not in
    ``PATH_PARAMETERS``, or a link to an operation not routed."""


async def openapi_document(request: web.Request) -> web.Response:
    """This document."""
    return web.Response(body=request.app[OPENAPI], content_type=JSON, charset="utf-8")


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
    "user_id": {
        "name": "user_id",
        "description": "A 10-digit user id such as 5779356081.",
        "schema": {"type": "string", "pattern": f"^{USER_ID_PATTERN}$"},
        "example": "5779356081",
    },
    "asset": {
        "name": "asset",
        "description": "The name of one of the console's files.",
        "schema": {"type": "string", "enum": sorted(console.ASSETS)},
        "example": "console.js",
    },
}


def _error(description: str, schema: type[Schema] = out.ErrorSchema) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


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
    values = {field.serialize("choice", {"choice": choice}) for choice in allowed}
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


def _broken_rule(rules_broken: tuple[str, ...]) -> dict[str, Any]:
    """The 422 of an operation, naming its rules; marked ``x-business-rule`` so
    that tools can tell it from a refusal of the request's shape (schemathesis.toml
    lets such operations answer it to requests the document calls valid)."""
    rules = " ".join(rules_broken)
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


def _error_statuses(route: Route) -> list[int]:
    doc = route.doc
    statuses = set(doc.errors)
    if doc.rules:
        statuses.add(422)
    if not route.always_admitted:
        statuses.add(503)  # admission control: overloaded, with Retry-After
    if not route.access.public:
        statuses |= {401, 403, 503}  # the token's user is looked up in PostgreSQL
    if "{" in route.path or doc.body is not None or doc.query is not None:
        statuses.add(400)
    if doc.body is not None:
        statuses.add(413)
    return sorted(statuses)


def _success(route: Route) -> dict[str, Any]:
    doc = route.doc
    content = doc.ok if isinstance(doc.ok, Mapping) else {JSON: {"schema": doc.ok}}
    ok: dict[str, Any] = {"description": doc.summary, "content": content}
    if route.handler in LINKS:
        ok["links"] = _links(*LINKS[route.handler])
    headers = dict(doc.headers or {})
    if route.cached:
        headers["ETag"] = _ETAG_HEADER
    if headers:
        ok["headers"] = headers
    return ok


def _operation(route: Route) -> dict[str, Any]:
    doc = route.doc
    responses: dict[str, Any] = {str(doc.status): _success(route)}
    if route.cached:
        responses["304"] = _NOT_MODIFIED
    for status in _error_statuses(route):
        if status == 422:
            responses["422"] = _broken_rule(doc.rules)
        else:
            responses[str(status)] = ERROR_RESPONSES[status][0]
    if doc.unavailable is not None:
        responses["503"] = _error(doc.unavailable.__doc__ or doc.summary, doc.unavailable)
    description = f"{route.access.who()} {doc.notes}".strip()
    operation: dict[str, Any] = {
        "operationId": _operation_id(route.handler),
        "tags": [doc.tag],
        "summary": doc.summary,
        "description": description,
        "security": [] if route.access.public else [{BEARER_AUTH: []}],
        "responses": responses,
    }
    parameters: list[dict[str, Any]] = []
    if doc.query is not None:
        parameters.append({"in": "query", "schema": doc.query})
    if route.cached:
        parameters.append(_IF_NONE_MATCH)
    parameters.extend(dict(parameter) for parameter in doc.parameters)
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": doc.body}}}
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


def build_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI document of exactly ``routes``."""
    spec = _new_spec()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    routed = {route.handler for route in routes}
    for source, (_, targets) in LINKS.items():
        if source in routed and not routed.issuperset(targets):
            raise UndocumentedRoute(f"{_operation_id(source)}: a link to an operation not routed")
    for path, operations in paths.items():
        spec.path(path=path, operations=operations, parameters=_path_parameters(path))
    return spec.to_dict()


# Documents built, by the table they describe (kept, so its id stays its own):
# apps of one process share one build, which takes about 20 ms.
_BUILT: Final[dict[int, tuple[Sequence[Route], bytes]]] = {}


def document_bytes(routes: Sequence[Route]) -> bytes:
    """``build_document`` as JSON, built once per table."""
    built = _BUILT.get(id(routes))
    if built is None or built[0] is not routes:
        built = _BUILT[id(routes)] = (routes, orjson.dumps(build_document(routes)))
    return built[1]
