"""Cache errors, logged at most once per kind per interval, with Redis's own words.

Under load a refusing Redis (OOM, a wrong password) fails every request the
same way; one line per request would drown the log. ``ErrorLog`` writes the
first error of a kind at once, counts the repeats, and writes the next one no
sooner than ``interval_s`` later with the count of those it held back. The
most recent error is kept (``last``) for the detailed health report.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)

# "Error running script (call to f_<sha>): @user_script:10: ... -OOM command not allowed..."
_SCRIPT_ERROR_RE: Final = re.compile(r"@user_script:.*?-([A-Z]+ .*)$")
# "Command # 1 (SET <key> <value>) of pipeline caused error: ('command not allowed...',)"
_PIPELINE_ERROR_RE: Final = re.compile(
    r"Command # \d+ \((\w+) .*\) of pipeline caused error: \(['\"](.*)['\"],\)$"
)
MAX_KINDS: Final = 64  # kinds remembered; the oldest is forgotten past this

# redis-py strips the error code from Redis's message; these put it back.
_CODES: Final = (
    (OutOfMemoryError, "OOM"),
    (ReadOnlyError, "READONLY"),
    (NoPermissionError, "NOPERM"),
    (BusyLoadingError, "LOADING"),
    (NoScriptError, "NOSCRIPT"),
)


def redis_reason(exc: BaseException) -> str:
    """What went wrong, as Redis (or the TLS layer) said it: ``NOAUTH
    Authentication required.``, ``WRONGPASS invalid username-password pair...``,
    ``OOM command not allowed...``, ``TLS: [SSL: CERTIFICATE_VERIFY_FAILED]...``."""
    text = str(exc).strip() or exc.__class__.__name__
    inner = _SCRIPT_ERROR_RE.search(text)
    if inner is not None:  # a command inside a script: Redis's error, without the wrapping
        return f"{inner.group(1)} (in a script)"
    code = next((code for cls, code in _CODES if isinstance(exc, cls)), None)
    piped = _PIPELINE_ERROR_RE.search(text)
    if piped is not None:  # no key names (they may hold ids) in the line
        text = f"{piped.group(2)} ({piped.group(1)} in a pipeline)"
    # redis-py turns an AUTH or HELLO refused at connect time into a plain
    # ConnectionError with Redis's text: the text tells which it was.
    lowered = text.lower()
    if "username-password" in lowered or "invalid password" in lowered:
        code = "WRONGPASS"
    elif "authentication required" in lowered or "already authenticated" in lowered:
        code = "NOAUTH"
    elif isinstance(exc, AuthenticationError):
        code = "AUTH"
    elif code is None and ("SSL" in text or "certificate" in text.lower()):
        code = "TLS:"
    elif code is None and not isinstance(exc, ResponseError):
        code = f"{exc.__class__.__name__}:"
    # A plain ResponseError keeps Redis's message as is (ERR, BUSY... in front).
    return text if code is None else f"{code} {text}"


def error_kind(exc: BaseException) -> str:
    """A short, bounded name for the kind of error: Redis's code (``OOM``,
    ``WRONGPASS``, ``TLS``) when there is one, else the exception's class."""
    code = redis_reason(exc).split(" ", 1)[0].rstrip(":")
    return code if code.isupper() else exc.__class__.__name__


@dataclass(slots=True)
class LastError:
    kind: str
    reason: str
    operation: str
    at: float  # Unix time

    def as_dict(self) -> dict[str, str]:
        when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"kind": self.kind, "reason": self.reason, "operation": self.operation, "at": when}


@dataclass(slots=True)
class _Kind:
    logged_at: float
    held_back: int = 0


class ErrorLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._kinds: dict[str, _Kind] = {}
        self.last: LastError | None = None

    def report(self, level: int, exc: BaseException, what: str) -> None:
        """Log ``<what>: <Redis's reason>`` unless this kind was logged less
        than ``interval_s`` ago; then only count it."""
        kind = error_kind(exc)
        reason = redis_reason(exc)
        self.last = LastError(kind, reason, what, self._wall_clock())
        now = self._clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen.logged_at < self.interval_s:
            seen.held_back += 1
            return
        if seen is None and len(self._kinds) >= MAX_KINDS:
            del self._kinds[next(iter(self._kinds))]
        self._kinds[kind] = _Kind(now)
        if seen is not None and seen.held_back:
            self._logger.log(
                level,
                "%s: %s (and %d more like it in the last %.0f s)",
                what,
                reason,
                seen.held_back,
                now - seen.logged_at,
            )
        else:
            self._logger.log(level, "%s: %s", what, reason)
