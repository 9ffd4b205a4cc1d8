"""Admission control: a bound on the requests this instance serves at once.

Past ``HTTP_MAX_IN_FLIGHT`` requests in flight, a new one is answered at once
with 503 ``{"success": false, "error": "Service overloaded; retry shortly"}``
and ``Retry-After``, rather than joining a queue whose wait would end in a
timeout ("database unavailable") seconds later. ``/metrics`` is always
served, so an overloaded instance can still be seen.

A client that ignores ``Retry-After`` and sends its next request on the same
connection at once would keep the instance busy answering 503s, and the
requests it did admit would wait behind them. So once a 503 "overloaded"
(this bound's, or the PostgreSQL queue's) has been sent, the next request on
that connection is read ``OVERLOAD_PACE_MS`` later: the answer goes out at
once, the connection is paced. Other connections are not affected.

This middleware runs first, before the request context: a refusal costs as
little as it can (it is still counted in the request metrics).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from hita.api.errors import error_response
from hita.api.middlewares import route_template
from hita.api.typedefs import Handler
from hita.appkeys import METRICS
from hita.errors import Overloaded

ALWAYS_ADMITTED: Final = frozenset({"/metrics"})


@dataclass(slots=True)
class Admission:
    """In-flight requests and refusals, read by the metrics collector."""

    limit: int  # 0: no bound
    in_flight: int = 0
    peak: int = 0
    refused: int = 0

    def admit(self) -> bool:
        if self.limit and self.in_flight >= self.limit:
            self.refused += 1
            return False
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return True

    def done(self) -> None:
        self.in_flight -= 1


def admission_middleware(admission: Admission, retry_after_s: int, pace_s: float) -> Middleware:
    def to_pace(response: web.StreamResponse) -> bool:
        return pace_s > 0 and response.status == 503 and "Retry-After" in response.headers

    async def paced(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """Send a 503 overloaded now; read this connection's next request later."""
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            return response  # the client left: aiohttp drops the answer quietly
        await asyncio.sleep(pace_s)
        return response

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ALWAYS_ADMITTED:
            return await handler(request)
        if not admission.admit():
            started = time.perf_counter()
            refusal = error_response(Overloaded(reason="in_flight"), retry_after_s)
            metrics = request.app.get(METRICS)
            if metrics is not None:
                elapsed = time.perf_counter() - started
                metrics.observe_request(request.method, route_template(request), 503, elapsed)
            return await paced(request, refusal) if to_pace(refusal) else refusal
        try:
            response = await handler(request)
        finally:
            admission.done()
        return await paced(request, response) if to_pace(response) else response

    return admit
