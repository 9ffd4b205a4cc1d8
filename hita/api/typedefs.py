"""Types shared by the HTTP layer."""

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A cached read's answer when everything it needs is in memory, with no wait;
# None: the route's ``Handler`` answers (hita.api.front).
HeldHandler = Callable[[web.Request], web.StreamResponse | None]
