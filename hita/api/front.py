"""The front: the work every request shares, in one pass, as each route's
aiohttp handler (``Front``; hita.api.router puts it on every route).

For each request, in this order: a request id for every log line and its
deadline for waiting in queues (``hita.deadline``), admission control, the
token and the route's access check, the handler, the error mapping, the
``ETag`` of a cached read, then the metrics and the access line. The 404 and
405 answers are routes of their own and pass through it too. One layer, and
not an aiohttp middleware: each layer aiohttp runs costs a call and a
coroutine per request, and its middleware chain a lookup and a ``partial``,
which a warm read served from memory notices; what the route decides (its
label, admission, access, ETag) is decided once, when the route is made. For
a mutating route (POST, PUT, PATCH, DELETE), the invalidation middleware
(``hita.api.invalidation``) runs between the metrics and the error mapping: it
sees the final status of the answer, as the pattern-based middleware of the
seed does, and what it raises is not taken for the handler's answer.

A cached read whose route has a ``held`` answer (``Route.held``) tries it
first: with a token verified before, the caller's standing and the answer in
L1, it is the same lookups and checks as the handler's way with nothing to
wait for, made without a coroutine; anything missing, and the handler answers.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
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
from hita.api.wire import with_request_id
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


class Front:
    """The shared work of every request; ``front(route, handler)`` is the
    aiohttp handler of ``route`` (``None``: the 404 and 405, hita.api.router)."""

    def __init__(
        self,
        *,
        auth: Authenticator,
        admission: Admission,
        metrics: Metrics,
        access_log: AccessLog | None,
        http: HttpConfig,
        wait_budget_s: float,
        invalidation: Middleware,
        held_answers: bool = True,
    ) -> None:
        self.auth = auth
        self.admission = admission
        self.metrics = metrics
        self.access_log = access_log
        self.retry_s, self.pace_s = http.retry_after_s, http.overload_pace_s
        self.wait_budget_s = wait_budget_s
        self.invalidation = invalidation
        self.held_answers = held_answers  # False: no L1 holds any, so none is tried
        self.request_id = RequestIds().of

    def __call__(self, route: Route | None, handler: Handler) -> Handler:
        return _RouteFront(self, route, handler).serve


class _RouteFront:
    """The front of one route: what the route decides (its label, whether
    admission counts it, its access, its ETag) is decided once, here."""

    __slots__ = ("access", "cached", "counted", "front", "handler", "held", "label", "mutating")

    def __init__(self, front: Front, route: Route | None, handler: Handler) -> None:
        self.front, self.handler = front, handler
        self.label = UNMATCHED if route is None else route.path
        self.counted = route is not None and not route.always_admitted
        self.mutating = route is not None and route.method in MUTATING_METHODS
        self.access = None if route is None or route.access.public else route.access
        self.cached = route is not None and route.cached
        self.held = None if route is None or not front.held_answers else route.held

    async def answer(self, request: web.Request) -> web.StreamResponse:
        """The handler's answer, behind the route's access check; every error
        as JSON; a cached read's 200 with its ``ETag``."""
        try:
            if self.access is not None:
                await self.front.auth.authorize(request, self.access)
            response = await self.handler(request)
        except Exception as exc:  # not a cancellation: that is the client leaving
            return answer_error(request, exc, self.front.retry_s)
        return tagged(request, response) if self.cached else response

    def held_answer(self, request: web.Request) -> web.StreamResponse | None:
        """``answer`` when everything it needs is in memory: a token verified
        before, the caller's standing and the route's answer held in L1 (the
        same lookups and rules as ``answer``'s way, with nothing to wait for,
        so no coroutine); None: ``answer`` decides."""
        assert self.held is not None
        try:
            access = self.access
            if access is not None and self.front.auth.known_authorized(request, access) is None:
                return None
            response = self.held(request)
        except Exception as exc:  # the errors ``answer`` would map, mapped alike
            return answer_error(request, exc, self.front.retry_s)
        return None if response is None else tagged(request, response)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        front = self.front
        started = time.monotonic()
        rid = front.request_id(request)
        reset = request_id_var.set(rid)
        reset_budget = wait_budget.set(WaitBudget(front.wait_budget_s))
        reads = ReadScope()  # tallied by the cache, by tier (hita.cache.stats)
        reset_reads = READS.set(reads)
        status, answered = 500, 0.0
        admitted = not self.counted or front.admission.admit()
        response: web.StreamResponse
        try:
            if not admitted:
                response = error_response(Overloaded(reason="queue_delay"), front.retry_s)
            elif self.held is not None and (held := self.held_answer(request)) is not None:
                response = held
            elif self.mutating:
                response = await front.invalidation(request, self.answer)
            else:
                response = await self.answer(request)
            status = response.status
            with_request_id(response, rid)
            if status == 503 and to_pace(response, front.pace_s):
                answered = time.monotonic()  # the pace that follows is not the request's time
                return await send_then_pace(request, response, front.pace_s)
            return response
        except asyncio.CancelledError:
            if client_gone(request):  # aiohttp cancelled the handler: the client hung up
                status = CLIENT_CLOSED_REQUEST
                front.metrics.client_disconnect(request.method, self.label)
            raise
        finally:
            if self.counted and admitted:
                front.admission.done()
            elapsed = (answered or time.monotonic()) - started
            front.metrics.observe_request(request.method, self.label, status, elapsed)
            if any(reads.tally):
                front.metrics.observe_reads(self.label, reads.tally)
            access_log = front.access_log
            if access_log is not None and access_log.enabled:
                access_log.line(request.method, request.rel_url, status, elapsed, rid)
            reads.live = False
            request_id_var.reset(reset)
            wait_budget.reset(reset_budget)
            READS.reset(reset_reads)
