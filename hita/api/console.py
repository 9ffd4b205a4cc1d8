"""``/v1.0/cache/console``: the cache console, one page and its static files.

The page holds no data, so it and its files are public: it is a login form
(or a pasted token) and a script that reads ``GET /v1.0/cache/stats`` with
the token in the ``Authorization`` header, as any client would, and calls the
admin actions of the API. Admin rights are checked where the data is: a
token without them gets 401 or 403 there, and the page shows the login form
again. The files are package data (``hita/api/static``), read once; every
answer carries a Content-Security-Policy that lets the page load and fetch
from this service only, and run no inline script or style.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

from aiohttp import web

PAGE: Final = "console.html"
# The files the page loads, by name, with their content type.
ASSETS: Final = {
    "console.js": "text/javascript",
    "plot.js": "text/javascript",
    "console.css": "text/css",
    "icon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def static_file(name: str) -> bytes:
    return (resources.files("hita.api") / "static" / name).read_bytes()


def _serve(name: str, content_type: str) -> web.Response:
    return web.Response(
        body=static_file(name), content_type=content_type, charset="utf-8", headers=HEADERS
    )


async def page(request: web.Request) -> web.Response:
    """Anyone. The console's page (it asks for an admin's token)."""
    return _serve(PAGE, "text/html")


async def asset(request: web.Request) -> web.Response:
    """Anyone. One of the page's static files."""
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return _serve(name, ASSETS[name])
