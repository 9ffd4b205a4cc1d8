"""The router, made from the route table (``hita.api.routes``).

Each path is one resource, so a method it lacks is a 405 whose ``Allow`` lists
exactly the methods of that path; every GET also answers HEAD (the same
answer without its body). A path without parameters is a ``FixedResource``:
it answers for itself with every method, so ``GET /v1.0/user/create`` is a
405, never ``/v1.0/user/{user_id}`` with ``create`` for an id.

Every aiohttp route's handler is the front (``hita.api.front``) around the
route's own handler: the service has no aiohttp middleware. So that the 404
and the 405 pass through the front too (JSON, counted, logged), they are
routes of their own (``REFUSALS``, of every method): the 405 of a fixed path,
and a last resource that takes every path nothing else took.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import ResourceRoute, UrlMappingMatchInfo

from hita.api.middlewares import REFUSALS
from hita.api.route import Route
from hita.api.typedefs import Handler

# The aiohttp handler of a route (None: a refusal), given its own handler.
Fronting = Callable[[Route | None, Handler], Handler]


class FixedResource(web.PlainResource):
    """A path without parameters that answers for itself whatever the method:
    one it does not serve is a 405 listing its own methods. aiohttp would go on
    to the parameterised paths beside it and let ``{user_id}`` take the last
    segment (a 400 "Invalid user id" for ``GET /v1.0/user/create``, and an
    ``Allow`` naming the other path's methods)."""

    def __init__(self, path: str, refuse: Handler) -> None:
        super().__init__(path)
        self._refusal = ResourceRoute(REFUSALS, refuse, self)  # not one of its routes

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        match, allowed = await super().resolve(request)
        if match is None and allowed:  # the path is ours, the method is not
            return UrlMappingMatchInfo({}, self._refusal), allowed
        return match, allowed


class Unmatched(web.PlainResource):
    """Last in the router (indexed under ``/``, which aiohttp tries last): every
    request target no other resource took, ``*`` and the like included."""

    def __init__(self, refuse: Handler) -> None:
        super().__init__("/")
        self._refusal = ResourceRoute(REFUSALS, refuse, self)

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        return UrlMappingMatchInfo({}, self._refusal), set()


async def _refuse(request: web.Request) -> web.StreamResponse:
    """A 405 listing the methods of the path, if some resource has it; else a 404."""
    own = request.match_info.route.resource
    allowed: set[str] = set()
    if isinstance(own, FixedResource):
        allowed = {route.method for route in own}
    else:
        for resource in request.app.router.resources():
            if resource is not own:
                _, methods = await resource.resolve(request)
                allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _resource(router: web.UrlDispatcher, path: str, refuse: Handler) -> web.Resource:
    for resource in router.resources():
        if isinstance(resource, web.Resource) and resource.canonical == path:
            return resource
    if "{" in path:
        return router.add_resource(path)
    fixed = FixedResource(path, refuse)
    router.register_resource(fixed)
    return fixed


def setup_routes(app: web.Application, routes: Sequence[Route], front: Fronting) -> None:
    """Route ``routes`` (GET also as HEAD), each through ``front``; then the
    refusals: every other path, and every other method of a path."""
    refuse = front(None, _refuse)
    for route in routes:
        resource = _resource(app.router, route.path, refuse)
        resource.add_route(route.method, front(route, route.handler))
        if route.method == hdrs.METH_GET:
            resource.add_route(hdrs.METH_HEAD, front(route, route.handler))
    app.router.register_resource(Unmatched(refuse))
