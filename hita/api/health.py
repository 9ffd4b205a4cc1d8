"""``GET /v1.0/health``: liveness, with the state of each dependency inside."""

from __future__ import annotations

import asyncio

from aiohttp import web

from hita.api.responses import json_ok
from hita.appkeys import CACHE, DATABASE


def _state(ok: bool) -> dict[str, str]:
    return {"status": "ok" if ok else "unavailable"}


async def health(request: web.Request) -> web.Response:
    database_ok, cache_ok = await asyncio.gather(
        request.app[DATABASE].ping(), request.app[CACHE].ping()
    )
    return json_ok(
        {
            "status": "ok" if database_ok and cache_ok else "degraded",
            "database": _state(database_ok),
            "cache": _state(cache_ok),
        }
    )
