"""The front middleware: the work every request shares, in one pass.

For each request, in this order: the route-table entry it matched (none for
a 404 or 405), a request id for every log line and its deadline for waiting
in queues (``hita.deadline``), admission control, the token
and the route's access check, the handler, the error mapping, the ``ETag`` of
a cached read, then the metrics and the access line. One layer instead of
six: each layer aiohttp runs costs a call and a coroutine per request, which
a warm read served from memory notices. For a mutating route (POST, PUT,
PATCH, DELETE), the invalidation middleware (``hita.api.invalidation``) runs
between the metrics and the error mapping: it sees the final status of the
answer, as the pattern-based middleware of the seed does, and what it raises
is not taken for the handler's answer.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import time
from collections.abc import Mapping
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from hita.api.access_log import AccessLog
from hita.api.admission import Admission, send_then_pace, to_pace
from hita.api.auth import Authenticator
from hita.api.errors import answer_error, error_response
from hita.api.etag import tagged
from hita.api.invalidation import MUTATING_METHODS
from hita.api.middlewares import REQUEST_ID_HEADER, UNMATCHED, client_gone
from hita.api.route import Route
from hita.api.typedefs import Handler
from hita.cache.stats import READS, ReadScope
from hita.config import HttpConfig
from hita.constants import CLIENT_CLOSED_REQUEST
from hita.deadline import WaitBudget, wait_budget
from hita.errors import Overloaded
from hita.logs import request_id_var
from hita.metrics import Metrics

_CLIENT_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{8,64}")


class RequestIds:
    """New request ids: 32 hex digits, a random prefix drawn once per process
    (64 bits) and a sequence number, unique across processes without a system
    call per request (``os.urandom`` is one)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._next = itertools.count(1).__next__

    def of(self, request: web.Request) -> str:
        """The client's ``X-Request-ID`` if it is a sane one, else a new one."""
        offered = request.headers.get(REQUEST_ID_HEADER)
        if offered is not None and _CLIENT_REQUEST_ID_RE.fullmatch(offered):
            return offered
        return f"{self._prefix}{self._next():016x}"


async def _answer(
    request: web.Request,
    *,
    handler: Handler,
    route: Route | None,
    auth: Authenticator,
    retry_s: int,
) -> web.StreamResponse:
    """The handler's answer, behind the route's access check; every error as
    JSON; a cached read's 200 with its ``ETag``. No route: a 404 or 405."""
    try:
        if route is not None and route.access.role is not None:
            await auth.authorize(request, route.access)
        response = await handler(request)
    except Exception as exc:  # not a cancellation: that is the client leaving
        return answer_error(request, exc, retry_s)
    return tagged(request, response) if route is not None and route.cached else response


def front_middleware(
    served: Mapping[web.AbstractRoute, Route],
    *,
    auth: Authenticator,
    admission: Admission,
    metrics: Metrics,
    access_log: AccessLog | None,
    http: HttpConfig,
    wait_budget_s: float,
    invalidation: Middleware,
) -> Middleware:
    retry_s, pace_s = http.retry_after_s, http.overload_pace_s
    request_id = RequestIds().of

    @web.middleware
    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        route = served.get(request.match_info.route)
        rid = request_id(request)
        reset = request_id_var.set(rid)
        reset_budget = wait_budget.set(WaitBudget(wait_budget_s))
        reads = ReadScope()  # tallied by the cache, by tier (hita.cache.stats)
        reset_reads = READS.set(reads)
        label, status, answered = UNMATCHED if route is None else route.path, 500, 0.0
        counted = route is not None and not route.always_admitted
        admitted = not counted or admission.admit()
        response: web.StreamResponse
        try:
            if not admitted:
                response = error_response(Overloaded(reason="queue_delay"), retry_s)
            elif route is not None and route.method in MUTATING_METHODS:
                answer = functools.partial(
                    _answer, handler=handler, route=route, auth=auth, retry_s=retry_s
                )
                response = await invalidation(request, answer)
            else:
                response = await _answer(
                    request, handler=handler, route=route, auth=auth, retry_s=retry_s
                )
            status = response.status
            response.headers[REQUEST_ID_HEADER] = rid
            if status == 503 and to_pace(response, pace_s):
                answered = time.monotonic()  # the pace that follows is not the request's time
                return await send_then_pace(request, response, pace_s)
            return response
        except asyncio.CancelledError:
            if client_gone(request):  # aiohttp cancelled the handler: the client hung up
                status = CLIENT_CLOSED_REQUEST
                metrics.client_disconnect(request.method, label)
            raise
        finally:
            if counted and admitted:
                admission.done()
            elapsed = (answered or time.monotonic()) - started
            metrics.observe_request(request.method, label, status, elapsed)
            if any(reads.tally):
                metrics.observe_reads(label, reads.tally)
            if access_log is not None and access_log.enabled:
                access_log.line(request.method, request.rel_url, status, elapsed, rid)
            reads.live = False
            request_id_var.reset(reset)
            wait_budget.reset(reset_budget)
            READS.reset(reset_reads)

    return front
