"""Every error becomes the contract's JSON body, with the right status
(``answer_error``, called by the front for every route).

Domain errors map to statuses in ``ERROR_TO_HTTP_STATUS``; aiohttp's own HTTP
errors (unknown route, wrong method, body too large) keep their status and get
our body; anything unexpected is logged with its traceback while the client
gets a generic 500 that echoes nothing of the request.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from hita import errors
from hita.api.middlewares import client_gone, route_template
from hita.api.responses import json_error
from hita.appkeys import METRICS
from hita.constants import CLIENT_CLOSED_REQUEST, OVERLOAD_RETRY_AFTER_S
from hita.services.login_throttle import LoginThrottled

log = logging.getLogger(__name__)

ERROR_TO_HTTP_STATUS: Final[dict[type[errors.HitaError], int]] = {
    errors.InvalidInput: 400,
    errors.NotAuthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.BusinessRuleViolation: 422,
    errors.DependencyUnavailable: 503,
    LoginThrottled: 429,
}

_HTTP_MESSAGES: Final = {
    404: "Resource not found",
    405: "Method not allowed",
    413: "Request body too large",
}


def status_for(exc: errors.HitaError) -> int:
    for cls in type(exc).__mro__:
        if cls in ERROR_TO_HTTP_STATUS:
            return ERROR_TO_HTTP_STATUS[cls]
    return 500


def error_response(
    exc: errors.HitaError, retry_after_s: int = OVERLOAD_RETRY_AFTER_S
) -> web.Response:
    status = status_for(exc)
    extra: dict[str, object] = {}
    if isinstance(exc, errors.InvalidInput) and exc.details:
        extra["details"] = exc.details
    if isinstance(exc, errors.CacheUnavailable):
        extra["cache_available"] = False
        if exc.reason:
            extra["reason"] = exc.reason
    response = json_error(status, exc.public_message, **extra)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, LoginThrottled):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, errors.Overloaded):
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    message = _HTTP_MESSAGES.get(exc.status) or exc.reason
    response = json_error(exc.status, message)
    for header in ("Allow", "WWW-Authenticate"):
        if header in exc.headers:
            response.headers[header] = exc.headers[header]
    return response


def answer_error(request: web.Request, exc: Exception, retry_after_s: int) -> web.Response:
    """The JSON answer to an exception raised while serving ``request`` (one
    of aiohttp's redirects, below 400, is raised again)."""
    if isinstance(exc, errors.HitaError):
        return error_response(exc, retry_after_s)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _from_http_exception(exc)
    if isinstance(exc, ConnectionError) and client_gone(request):
        # The client hung up (while sending its body, say): nobody to answer
        # and nothing went wrong here. Counted apart, never as a 5xx.
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.client_disconnect(request.method, route_template(request))
        log.info("client hung up during %s %s", request.method, request.path)
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return json_error(500, "Internal server error")
