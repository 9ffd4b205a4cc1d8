"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from aiohttp import web

from hita.appkeys import METRICS
from hita.metrics import CONTENT_TYPE


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})
