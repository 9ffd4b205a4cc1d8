"""Request context: a request id for every log line, one access line, and the
request's metrics (its latency, and its cache reads by tier)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from hita.api.typedefs import Handler
from hita.appkeys import METRICS
from hita.cache.stats import READS
from hita.constants import CLIENT_CLOSED_REQUEST
from hita.logs import request_id_var

log = logging.getLogger("hita.access")

REQUEST_ID_HEADER: Final = "X-Request-ID"
_CLIENT_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{8,64}")


def client_gone(request: web.Request) -> bool:
    """Whether the client's connection is closed (it hung up)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def route_template(request: web.Request) -> str:
    """The matched route (``/v1.0/user/{user_id}``), never the raw path, so that
    metrics and logs grouped by route stay bounded whatever clients send."""
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


def request_context_middleware(*, access_log: bool = True) -> Middleware:
    """The request id, the per-route metrics and (unless ``access_log`` is off)
    one access line for every request."""

    @web.middleware
    async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        # 128 random bits as 32 hex digits, like uuid4().hex at a fifth of its cost.
        ours = not offered or _CLIENT_REQUEST_ID_RE.fullmatch(offered) is None
        request_id = os.urandom(16).hex() if ours else offered
        token = request_id_var.set(request_id)
        reads = [0, 0, 0]  # l1, redis, miss: counted by the cache
        reads_token = READS.set(reads)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except asyncio.CancelledError:
            if client_gone(request):  # aiohttp cancelled the handler: the client hung up
                status = CLIENT_CLOSED_REQUEST
                request.app[METRICS].client_disconnect(request.method, route_template(request))
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics = request.app[METRICS]
            route = route_template(request)
            metrics.observe_request(request.method, route, status, elapsed)
            if reads != [0, 0, 0]:
                metrics.observe_reads(route, reads)
            if access_log:
                log.info("%s %s %d %.1fms", request.method, request.path, status, elapsed * 1000)
            READS.reset(reads_token)
            request_id_var.reset(token)

    return request_context
