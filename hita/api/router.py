"""The router, made from the route table (``hita.api.routes``).

Each path is one resource, so a method it lacks is a 405 whose ``Allow`` lists
exactly the methods of that path; every GET also answers HEAD (the same
answer without its body). A path without parameters is a ``FixedResource``:
it answers for itself with every method, so ``GET /v1.0/user/create`` is a
405, never ``/v1.0/user/{user_id}`` with ``create`` for an id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import MatchInfoError, UrlMappingMatchInfo

from hita.api.route import Route


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


def setup_routes(
    app: web.Application, routes: Sequence[Route]
) -> Mapping[web.AbstractRoute, Route]:
    """Route ``routes`` (GET also as HEAD); what each aiohttp route serves."""
    served: dict[web.AbstractRoute, Route] = {}
    for route in routes:
        resource = _resource(app.router, route.path)
        served[resource.add_route(route.method, route.handler)] = route
        if route.method == hdrs.METH_GET:
            served[resource.add_route(hdrs.METH_HEAD, route.handler)] = route
    return served
