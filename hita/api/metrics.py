"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from aiohttp import web

from hita.appkeys import INSTANCE, METRICS
from hita.metrics import CONTENT_TYPE


async def metrics(request: web.Request) -> web.Response:
    view = request.app.get(INSTANCE)
    if view is not None:  # the outbox lag is one query, at most once a second
        await view.read_outbox_lag()
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})
