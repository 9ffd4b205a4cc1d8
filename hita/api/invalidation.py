"""``CacheInvalidationMiddleware``: the seed's automatic invalidation.

After a POST, PUT, PATCH or DELETE that answered 2xx on a route matching a
pattern, the cache families of that pattern are invalidated before the answer
goes out. The patterns are read from the route table (``invalidation_patterns``:
each mutating route's template, with the families of what it ``invalidates``,
``hita.services.cache_keys.FAMILIES``) and matched against the route template
that served the request (``/v1.0/user/{user_id}/activate``), never the raw
path, so no path variant escapes them. ``user_details`` means the details of
the user named in the path (or, for routes without one, of the user the
handler reports in ``AFFECTED_USER``), never of every user; the namespaces go
in O(1).

A 4xx changed nothing. A 5xx or an interrupted request invalidates nothing on
the request path either: what it may have committed is in the outbox, which
names exactly the users changed, and every instance applies it from there
(``hita.services.coherence``). Widening an unknown user to every user's
details, as a request-path guess, emptied the cache for everyone on each
failed login while PostgreSQL was down.

Once the handler has committed, nothing here may replace its answer: an
invalidation or a durable-path wait that fails is logged and counted, and
the committed 2xx goes out.

Differences from the seed's table (``CacheInvalidationMiddleware``'s
``INVALIDATION_PATTERNS``), each closing a stale read:

* ``superadmin_user_list`` goes wherever ``user_list`` goes: the superadmin
  list shows the same users (the seed never invalidates it at all, so it
  would stay stale for its 15 minutes).
* ``/user/{user_id}/deactivate``: the seed's ``/.+/activate`` pattern does not
  match it.
* ``/user/create`` also drops the new user's details (a "not found" for that
  id may have been cached briefly).
* ``/auth/login`` drops the user's details: ``last_login_at`` changed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from hita.api.middlewares import route_template
from hita.api.route import Route
from hita.api.typedefs import Handler
from hita.appkeys import AFFECTED_USER, CACHE, CACHE_KEYS, COHERENCE
from hita.cache.tracking_node import FRESH_S as L1_FRESH_S
from hita.constants import USER_DETAILS
from hita.db.database import collect_committed
from hita.domain.ids import is_user_id
from hita.services.cache_keys import FAMILIES

log = logging.getLogger(__name__)

MUTATING_METHODS: Final = frozenset(
    {hdrs.METH_POST, hdrs.METH_PUT, hdrs.METH_PATCH, hdrs.METH_DELETE}
)
Patterns = Mapping[str, frozenset[str]]  # route template pattern -> cache families


def invalidation_patterns(routes: Iterable[Route]) -> Patterns:
    """The table of patterns, from the route table: each mutating route that
    ``invalidates`` something, its template as a pattern."""
    patterns: dict[str, frozenset[str]] = {}
    for route in routes:
        if route.invalidates is not None and route.method in MUTATING_METHODS:
            pattern = re.escape(route.path)
            patterns[pattern] = patterns.get(pattern, frozenset()) | FAMILIES[route.invalidates]
    return patterns


def invalidation_for(template: str, patterns: Patterns) -> frozenset[str]:
    """The cache types a mutating request on this route template invalidates."""
    types: set[str] = set()
    for pattern, names in patterns.items():
        if re.fullmatch(pattern, template):
            types.update(names)
    return frozenset(types)


def owed(
    types: frozenset[str], status: int, user_id: str | None
) -> tuple[frozenset[str], str | None] | None:
    """What the request path invalidates after an answer with ``status``: only a
    2xx reports a change, and only the user it names (a user id it cannot
    name is left to the outbox, never widened to every user). None: nothing."""
    if not types or not 200 <= status < 300:
        return None
    if is_user_id(user_id):
        return types, user_id
    if USER_DETAILS in types:
        log.error("a 2xx named no user; its details are left to the outbox")
    return types - {USER_DETAILS}, None


async def _invalidate(
    app: web.Application, types: frozenset[str], user_id: str | None, xids: list[str]
) -> None:
    """Invalidate before the answer goes out; once Redis has acknowledged it,
    the outbox rows of ``xids`` it covered need no other instance, and the
    answer waits until no instance's L1 can still serve the old entry. If Redis does
    not acknowledge it within its budget, wait until no instance can serve the
    old entry (docs/cache.md). Never raises: the change is committed, and its
    answer stands."""
    try:
        if await app[CACHE_KEYS].invalidate(types, user_id, cause="http"):
            app[COHERENCE].acknowledge(xids, user_id, types)
            # By now every instance's L1 has taken the invalidation in, or
            # stopped serving: its last PONG is older than this (tracking_node).
            # Whatever this instance's own L1 setting: another instance's may
            # differ (a rolling change of CACHE_L1_ENABLED), and its L1 counts.
            await asyncio.sleep(L1_FRESH_S)
            return
        await app[COHERENCE].confirm_delivery()
    except Exception:
        app[CACHE].stats.invalidation_failures += 1
        log.exception(
            "a committed change's invalidation failed; it is left to the outbox"
            " (other instances hold it suspect until applied)"
        )


def cache_invalidation_middleware(patterns: Patterns) -> Middleware:
    table: dict[str, frozenset[str]] = {}

    def types_for(template: str) -> frozenset[str]:
        if template not in table:
            table[template] = invalidation_for(template, patterns)
        return table[template]

    @web.middleware
    async def invalidate_after(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in MUTATING_METHODS:
            return await handler(request)
        types = types_for(route_template(request))
        committed = collect_committed()
        response = await handler(request)
        user_id = request.match_info.get("user_id") or request.get(AFFECTED_USER)
        work = owed(types, response.status, user_id)
        if work is not None:
            # Shielded: a client that hangs up must not cancel the invalidation.
            await asyncio.shield(_invalidate(request.app, *work, committed))
        return response

    return invalidate_after
