"""The access line: one per request, at the cost of a few microseconds.

Every other line of the service goes through ``logging``. The access line is
written once per request, and through ``logging`` it cost a fifth of a warm
read (a ``LogRecord``, a handler lock, a formatter, one write system call per
line: docs/benchmarks.md). ``AccessLog`` formats it itself, with the same
fields as a ``logging`` line of the ``hita.access`` logger in the same format
(``hita.logs``: text or JSON, the time, level, logger, request id and worker),
and keeps it until the event loop's turn ends: the lines of one turn go out in
one write. Within one turn an access line may so follow a line that
``logging`` wrote after it; nothing else changes.

It follows the ``hita.access`` logger's level, as a ``logging`` line would:
``LOG_LEVEL=WARNING`` (or ``ACCESS_LOG=false``) writes none.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Final, TextIO

import orjson

from hita.logs import JsonFormatter, WorkerFilter

LOGGER: Final = "hita.access"
_LEVEL: Final = "INFO"


class AccessLog:
    @classmethod
    def beside_logging(cls, fmt: str) -> AccessLog:
        """Written where the service's log lines go (the root logger's stream
        handler that ``hita.logs.setup_logging`` installs), tagged with its worker
        if it has one; without such a handler, to standard error."""
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:
                workers = [f.worker for f in handler.filters if isinstance(f, WorkerFilter)]
                return cls(handler.stream, fmt, workers[0] if workers else None)
        return cls(sys.stderr, fmt)

    def __init__(self, stream: TextIO, fmt: str, worker: int | None = None) -> None:
        self._stream = stream
        self._json = JsonFormatter() if fmt == "json" else None
        self._worker = worker
        self._logger = logging.getLogger(LOGGER)
        self._pending: list[str] = []
        self._second = -1
        self._asctime = ""  # the text format's time, up to the second
        self._milli = -1
        self._json_time = ""  # the JSON format's time, to the millisecond
        # hita.logs.TEXT_FORMAT (WORKER_TEXT_FORMAT) between the time and the request id
        self._tag = f"{_LEVEL:<7} {'' if worker is None else f'w{worker} '}{LOGGER}"
        self._json_tail = "}" if worker is None else f',"worker":{worker}}}'

    @property
    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def line(self, method: str, path: str, status: int, seconds: float, request_id: str) -> None:
        """Queue one request's line, to be written when the loop's turn ends."""
        created = time.time()
        message = f"{method} {path} {status} {seconds * 1000:.1f}ms"
        if self._json is not None:
            # JsonFormatter's object, key for key; only the message (the path) needs escaping.
            text = (
                f'{{"time":"{self._time_json(created)}","level":"{_LEVEL}","logger":"{LOGGER}",'
                f'"message":{orjson.dumps(message).decode()},'
                f'"request_id":{orjson.dumps(request_id).decode()}{self._json_tail}'
            )
        else:
            text = f"{self._time(created)} {self._tag} [{request_id}] {message}"
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(text)

    def _time_json(self, created: float) -> str:
        milli = int(created * 1000)
        if milli != self._milli:
            assert self._json is not None
            self._milli, self._json_time = milli, self._json.time_text(created)
        return self._json_time

    def _time(self, created: float) -> str:
        """``logging.Formatter``'s default ``asctime``: local time, milliseconds."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._asctime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._asctime},{int((created - second) * 1000):03d}"

    def flush(self) -> None:
        """Write every queued line, in one write."""
        if not self._pending:
            return
        lines = "\n".join(self._pending) + "\n"
        self._pending.clear()
        try:
            self._stream.write(lines)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: as logging, go on
            pass
