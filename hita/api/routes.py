"""Every route of the service, in one table."""

from __future__ import annotations

from aiohttp import web

from hita.api import health
from hita.constants import API_PREFIX


def setup_routes(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/health", health.health, allow_head=False)
