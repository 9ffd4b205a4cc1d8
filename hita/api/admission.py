"""Admission control: a bound on the requests this instance serves at once.

Past ``HTTP_MAX_IN_FLIGHT`` requests in flight, a new one is answered at once
with 503 ``{"success": false, "error": "Service overloaded; retry shortly"}``
and ``Retry-After``, rather than joining a queue whose wait would end in a
timeout ("database unavailable") seconds later. ``/metrics`` is always
served, so an overloaded instance can still be seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from hita.api.errors import error_response
from hita.api.typedefs import Handler
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


def admission_middleware(admission: Admission, retry_after_s: int) -> Middleware:
    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ALWAYS_ADMITTED:
            return await handler(request)
        if not admission.admit():
            return error_response(Overloaded(reason="in_flight"), retry_after_s)
        try:
            return await handler(request)
        finally:
            admission.done()

    return admit
