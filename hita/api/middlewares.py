"""What the HTTP layer's modules share about a request."""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web

REQUEST_ID_HEADER: Final = "X-Request-ID"
UNMATCHED: Final = "unmatched"  # the route label of a 404 or 405
REFUSALS: Final = hdrs.METH_ANY  # the method of the routes that answer 404 or 405, and no other


def client_gone(request: web.Request) -> bool:
    """Whether the client's connection is closed (it hung up)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def route_template(request: web.Request) -> str:
    """The matched route (``/v1.0/user/{user_id}``), never the raw path, so that
    metrics and logs grouped by route stay bounded whatever clients send."""
    route = request.match_info.route
    resource = route.resource if route.method != REFUSALS else None
    return resource.canonical if resource is not None else UNMATCHED
