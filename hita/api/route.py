"""What is true of a route, declared once: ``Route``, with who may call it
(``Access``) and its OpenAPI facts (``Doc``). ``hita.api.routes`` holds the
table; the router, the auth check, the ETag set, admission, the OpenAPI
document and the invalidation patterns are all read from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from marshmallow import Schema

from hita.api.typedefs import Handler, HeldHandler
from hita.domain.roles import Role
from hita.services.cache_keys import Scope


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a route: anyone (``role`` None, no token), or a caller with
    at least ``role``; with ``self_allowed``, also the user its path names."""

    role: Role | None = None
    self_allowed: bool = False

    @property
    def public(self) -> bool:
        return self.role is None

    def who(self) -> str:
        if self.role is None:
            return "Anyone, without a token."
        caller = {Role.USER: "A user", Role.ADMIN: "An admin", Role.SUPERADMIN: "A superadmin"}
        named = caller[self.role]
        return f"The user itself, or {named.lower()}." if self.self_allowed else f"{named}."


PUBLIC: Final = Access()
ADMIN: Final = Access(Role.ADMIN)
SUPERADMIN: Final = Access(Role.SUPERADMIN)
SELF_OR_ADMIN: Final = Access(Role.ADMIN, self_allowed=True)


@dataclass(frozen=True, slots=True)
class Doc:
    """A route's OpenAPI facts beyond what the rest of ``Route`` implies."""

    tag: str
    summary: str
    ok: type[Schema] | Mapping[str, Any]  # a JSON body's schema, or content by media type
    body: Schema | None = None
    query: Schema | None = None
    status: int = 200
    errors: frozenset[int] = frozenset()  # beyond those that follow from the route
    unavailable: type[Schema] | None = None  # a 503 body of its own, not the shared one
    headers: Mapping[str, Any] | None = None  # the success answer's headers (ETag aside)
    parameters: tuple[Mapping[str, Any], ...] = ()  # request headers it reads, documented
    notes: str = ""
    # Business rules a well-formed request may still break (422): they depend on who
    # calls or on the stored data, so no schema can state them.
    rules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """One route. ``cached``: a cached read (an ``ETag``, ``If-None-Match``);
    ``held``: its answer when L1 holds it, with no wait (the front tries it
    first, for a token verified before); ``always_admitted``: never refused
    by admission control; ``invalidates``: what a 2xx answer changed
    (``Scope``), so which cache families the invalidation middleware drops."""

    method: str
    path: str
    handler: Handler
    access: Access
    doc: Doc
    cached: bool = False
    held: HeldHandler | None = None
    always_admitted: bool = False
    invalidates: Scope | None = None
