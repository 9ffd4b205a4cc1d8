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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update(
            (key, value) for key, value in record.__dict__.items() if key not in _STANDARD_ATTRS
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
    """Stop computing what no format of ours prints: the caller's file and line
    (a stack walk per record), thread, process and multiprocessing names. The
    optimisation the logging HOWTO describes ("Optimization"); for the server,
    whose access line is written for every request."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
