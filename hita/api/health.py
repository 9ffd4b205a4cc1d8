"""Health routes for load balancers and orchestrators.

``GET /v1.0/health`` is readiness: 200 while PostgreSQL answers (the status
says ``degraded`` when only Redis is away, since every route but the cache
endpoints keeps working from PostgreSQL), 503 when PostgreSQL cannot be used,
so that a load balancer stops sending traffic here. ``notifications`` says
whether this instance's LISTEN delivers (docs/cache.md, "PgBouncer"). ``GET /v1.0/health/live``
is liveness: 200 whenever the process serves HTTP, without touching any
dependency, so that an orchestrator does not restart a process that is only
waiting for its database.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from hita.api.responses import json_ok, json_response
from hita.appkeys import CACHE, COHERENCE, DATABASE
from hita.errors import DatabaseUnavailable


def _state(ok: bool) -> dict[str, str]:
    return {"status": "ok" if ok else "unavailable"}


def _listen(deaf: bool | None) -> dict[str, str]:
    """Whether the reader session's LISTEN delivers: a deaf one (a pooler in
    transaction mode) changes no answer, only how soon writers that wait for
    the readers are done; so it is said here, and the status stays."""
    return {"status": "unknown" if deaf is None else "deaf" if deaf else "ok"}


async def health(request: web.Request) -> web.Response:
    """Readiness, with the state of each dependency."""
    database_ok, cache_ok = await asyncio.gather(
        request.app[DATABASE].ping(), request.app[CACHE].ping()
    )
    states = {
        "database": _state(database_ok),
        "cache": _state(cache_ok),
        "notifications": _listen(request.app[COHERENCE].session.probe.deaf),
    }
    if not database_ok:
        body = {"success": False, "error": DatabaseUnavailable.message, "status": "unavailable"}
        return json_response({**body, **states}, 503)
    return json_ok({"status": "ok" if cache_ok else "degraded", **states})


async def live(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP; no dependency is asked."""
    return json_ok({"status": "ok"})
