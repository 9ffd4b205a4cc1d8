"""The access line: one per request, at the cost of a few microseconds.

Every other line of the service goes through ``logging``. The access line is
written once per request, and through ``logging`` it cost a fifth of a warm
read (a ``LogRecord``, a handler lock, a formatter, one write system call per
line: docs/benchmarks.md). ``AccessLog`` formats it itself, with the same
fields as a ``logging`` line of the ``hita.access`` logger in the same format
(``hita.logs``: text or JSON, the time, level, logger, request id and worker),
and keeps it in a buffer, as nginx's ``access_log ... buffer= flush=`` does:
a request formats its line as it ends (``line``: one string appended to a
list), and the lines are written together once ``ACCESS_LOG_FLUSH_MS`` have
passed since the first of them, or sooner when ``BUFFER_LINES`` wait, and at
shutdown: with the one-header ``Content-Type``, it took the ``(floor)`` row
of ``make bench-http`` from 133 to 98 µs per request (docs/benchmarks.md).
Formatting a full buffer at the write instead held the event loop, and every
request in flight with it, for about 1.5 ms (1,024 lines; 0.04 ms to write
them formatted, at the same CPU a line: scripts/bench_parts.py), and kept
every request's URL alive until then. An access line may so follow a line
that ``logging`` wrote after it, by up to the flush interval, and a process
killed with SIGKILL loses that much; ``ACCESS_LOG_FLUSH_MS=0`` writes at the
end of each loop turn instead.

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
from yarl import URL

from hita.logs import JsonFormatter, WorkerFilter

LOGGER: Final = "hita.access"
_LEVEL: Final = "INFO"
BUFFER_LINES: Final = 1024  # written at once when this many wait, whatever the interval


# A request's line: when, method, path, status, seconds, request id.
_Fields = tuple[float, str, "str | URL", int, float, str]


class AccessLog:
    @classmethod
    def beside_logging(cls, fmt: str, *, flush_after_s: float = 0.0) -> AccessLog:
        """Written where the service's log lines go (the root logger's stream
        handler that ``hita.logs.setup_logging`` installs), tagged with its worker
        if it has one; without such a handler, to standard error."""
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:
                workers = [f.worker for f in handler.filters if isinstance(f, WorkerFilter)]
                worker = workers[0] if workers else None
                return cls(handler.stream, fmt, worker, flush_after_s=flush_after_s)
        return cls(sys.stderr, fmt, flush_after_s=flush_after_s)

    def __init__(
        self,
        stream: TextIO,
        fmt: str,
        worker: int | None = None,
        *,
        flush_after_s: float = 0.0,  # 0: at the end of the loop's turn
        buffer_lines: int = BUFFER_LINES,
    ) -> None:
        self._stream = stream
        self._flush_after_s = flush_after_s
        self._buffer_lines = buffer_lines
        self._timer: asyncio.TimerHandle | None = None
        self._json = JsonFormatter() if fmt == "json" else None
        self._worker = worker
        self._logger = logging.getLogger(LOGGER)
        self._pending: list[str] = []  # lines formatted, not yet written
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

    def line(
        self, method: str, path: str | URL, status: int, seconds: float, request_id: str
    ) -> None:
        """Format one request's line, to be written with the others
        (``flush``). ``path``: a request's ``rel_url``, decoded here."""
        pending = self._pending
        if not pending:
            loop = asyncio.get_running_loop()
            if self._flush_after_s > 0:
                self._timer = loop.call_later(self._flush_after_s, self.flush)
            else:
                loop.call_soon(self.flush)
        pending.append(self._text((time.time(), method, path, status, seconds, request_id)))
        if len(pending) >= self._buffer_lines:
            self.flush()

    def _text(self, fields: _Fields) -> str:
        created, method, path, status, seconds, request_id = fields
        if not isinstance(path, str):
            path = path.path
        message = f"{method} {path} {status} {seconds * 1000:.1f}ms"
        if self._json is not None:
            # JsonFormatter's object, key for key; only the message (the path) needs escaping.
            return (
                f'{{"time":"{self._time_json(created)}","level":"{_LEVEL}","logger":"{LOGGER}",'
                f'"message":{orjson.dumps(message).decode()},'
                f'"request_id":{orjson.dumps(request_id).decode()}{self._json_tail}'
            )
        return f"{self._time(created)} {self._tag} [{request_id}] {message}"

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        lines = "\n".join(pending) + "\n"
        try:
            self._stream.write(lines)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: as logging, go on
            pass
