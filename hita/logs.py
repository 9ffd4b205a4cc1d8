"""Standard logging: JSON lines in production, readable lines in development.

Each record carries the id of the request being served (a context variable
set by the request middleware), so one request's lines can be found together.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final

import orjson

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# Attributes every LogRecord has; anything else was passed with `extra=`.
_STANDARD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}

# Libraries that log at ERROR with a traceback for every bad request from the
# outside (aiohttp-jwt logs each invalid token that way); we log those ourselves.
_QUIET_LOGGERS: Final = ("aiohttp_jwt",)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def iso_time_ms(created: float) -> str:
    """``created`` as ``2026-01-02T03:04:05.678+00:00``, UTC to the millisecond."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The last whole second seen and its text up to the seconds: the server
        # writes a line per request, mostly within the same second.
        self._second: tuple[int, str] = (-1, "")

    def time_text(self, created: float) -> str:
        """``iso_time_ms(created)``, the same text at a fraction of the cost:
        the microseconds are rounded as ``datetime.fromtimestamp`` rounds
        them (half to even), then cut to milliseconds as ``isoformat`` does."""
        second = int(created)
        micros = round((created - second) * 1e6)
        if micros >= 1_000_000:
            second += 1
            micros -= 1_000_000
        if created < 0 or micros < 0:  # never for a log record; the plain way then
            return iso_time_ms(created)
        cached_second, prefix = self._second
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
            self._second = (second, prefix)
        return f"{prefix}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.time_text(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        fields = record.__dict__
        if not _STANDARD_ATTRS.issuperset(fields):  # passed with `extra=`: rare
            entry.update(
                (key, value) for key, value in fields.items() if key not in _STANDARD_ATTRS
            )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
WORKER_TEXT_FORMAT: Final = (
    "%(asctime)s %(levelname)-7s w%(worker)s %(name)s [%(request_id)s] %(message)s"
)


class WorkerFilter(logging.Filter):
    """Marks each record with the worker (``hita serve --workers``) that wrote it."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


def setup_logging(level: str, fmt: str, *, worker: int | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    text = TEXT_FORMAT
    if worker is not None:
        handler.addFilter(WorkerFilter(worker))
        text = WORKER_TEXT_FORMAT
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def skip_unused_record_fields() -> None:
    """Stop computing what no format of ours prints: thread, process and
    multiprocessing names (the logging HOWTO's "Optimization", through its
    public switches). The per-request access line does not go through
    ``logging`` at all (``hita.api.access_log``)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
