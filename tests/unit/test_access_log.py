"""``AccessLog`` writes the line ``logging`` would write for the same request,
field for field, in both formats, with and without a worker."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import time
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from hita.api.access_log import LOGGER, AccessLog
from hita.logs import TEXT_FORMAT, WORKER_TEXT_FORMAT, JsonFormatter, WorkerFilter

CREATED = 1_764_871_234.567_891  # away from a millisecond's edge
REQUEST_ID = "4a509ad86c7386f7fe2acfdc23e0c8b2"


def logging_line(fmt: str, message: str, worker: int | None) -> str:
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, message, None, None)
    record.created = CREATED
    record.msecs = int((CREATED - int(CREATED)) * 1000) + 0.0
    record.request_id = REQUEST_ID
    if worker is not None:
        WorkerFilter(worker).filter(record)
    if fmt == "json":
        return JsonFormatter().format(record)
    return logging.Formatter(TEXT_FORMAT if worker is None else WORKER_TEXT_FORMAT).format(record)


@pytest.mark.parametrize("worker", [None, 2])
@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_line_is_what_logging_would_write(
    fmt: str, worker: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = io.StringIO()
    access = AccessLog(sink, fmt, worker)
    monkeypatch.setattr(time, "time", lambda: CREATED)
    access.line("GET", '/v1.0/user/"odd"\\path', 200, 0.00125, REQUEST_ID)
    access.flush()
    message = 'GET /v1.0/user/"odd"\\path 200 1.2ms'
    assert sink.getvalue() == logging_line(fmt, message, worker) + "\n"


@settings(max_examples=300, deadline=None)
@given(
    path=st.text(max_size=40),
    status=st.integers(100, 599),
    seconds=st.floats(0, 100, allow_nan=False),
    fmt=st.sampled_from(["text", "json"]),
    worker=st.sampled_from([None, 1]),
)
def test_any_line_is_what_logging_would_write(
    path: str, status: int, seconds: float, fmt: str, worker: int | None
) -> None:
    """Whatever the path holds (quotes, backslashes, control characters, any
    script): the same line as ``logging``'s, escaped as its JSON formatter does."""
    access = AccessLog(io.StringIO(), fmt, worker)
    line = access._text((CREATED, "GET", path, status, seconds, REQUEST_ID))
    message = f"GET {path} {status} {seconds * 1000:.1f}ms"
    assert line == logging_line(fmt, message, worker)


class _Path:
    """A request's URL as ``AccessLog`` reads it (its decoded ``path``), which
    can be watched for being freed (yarl's ``URL`` takes no weak reference)."""

    def __init__(self, path: str) -> None:
        self.path = path


async def test_a_recorded_line_keeps_nothing_of_its_request() -> None:
    """The line is formatted as its request ends: until the write, the buffer
    holds text, not the request's URL (nor the fields to format later)."""
    sink = Writes()
    access = AccessLog(sink, "json", flush_after_s=60.0)
    url = _Path("/v1.0/user/7")
    freed = weakref.ref(url)
    access.line("GET", url, 200, 0.001, REQUEST_ID)  # type: ignore[arg-type]
    del url
    gc.collect()
    assert freed() is None
    access.flush()
    assert '"message":"GET /v1.0/user/7 200 1.0ms"' in sink.writes[0]


async def test_the_lines_of_one_loop_turn_go_out_in_one_write() -> None:
    writes: list[str] = []

    class Sink(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    access = AccessLog(Sink(), "text")
    for n in range(3):
        access.line("GET", f"/v1.0/user/{n}", 200, 0.001, REQUEST_ID)
    assert writes == []  # not before the loop's turn ends
    await asyncio.sleep(0)
    assert len(writes) == 1
    assert writes[0].count("\n") == 3
    access.line("GET", "/v1.0/health", 200, 0.001, REQUEST_ID)
    await asyncio.sleep(0)
    assert len(writes) == 2


async def test_it_goes_where_the_service_s_log_lines_go_with_their_worker() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(WorkerFilter(3))
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        access = AccessLog.beside_logging("text")
    finally:
        root.handlers[:] = saved
    access.line("GET", "/v1.0/health", 200, 0.001, REQUEST_ID)
    access.flush()
    assert (
        f" INFO    w3 hita.access [{REQUEST_ID}] GET /v1.0/health 200 1.0ms\n" in stream.getvalue()
    )


class Writes(io.StringIO):
    """A stream that records each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)


async def test_lines_go_out_together_once_the_flush_interval_has_passed() -> None:
    sink = Writes()
    access = AccessLog(sink, "text", flush_after_s=0.05)
    for n in range(3):
        access.line("GET", f"/v1.0/user/{n}", 200, 0.001, REQUEST_ID)
    await asyncio.sleep(0.01)  # loop turns pass: nothing yet
    assert sink.writes == []
    await asyncio.sleep(0.08)
    assert len(sink.writes) == 1
    assert sink.writes[0].count("\n") == 3


async def test_a_full_buffer_is_written_at_once_whatever_the_interval() -> None:
    sink = Writes()
    access = AccessLog(sink, "text", flush_after_s=60.0, buffer_lines=5)
    for n in range(4):
        access.line("GET", f"/v1.0/user/{n}", 200, 0.001, REQUEST_ID)
    assert sink.writes == []
    access.line("GET", "/v1.0/user/4", 200, 0.001, REQUEST_ID)
    assert len(sink.writes) == 1
    assert sink.writes[0].count("\n") == 5
    assert access._timer is None  # no timer left behind


async def test_a_request_s_url_is_logged_by_its_decoded_path_without_its_query() -> None:
    sink = Writes()
    access = AccessLog(sink, "text")
    access.line("GET", URL("/v1.0/user/list%20x?search=ann"), 200, 0.001, REQUEST_ID)
    access.flush()
    assert " GET /v1.0/user/list x 200 1.0ms\n" in sink.writes[0]


async def test_shutdown_writes_what_is_pending() -> None:
    sink = Writes()
    access = AccessLog(sink, "text", flush_after_s=60.0)
    access.line("GET", "/v1.0/health", 200, 0.001, REQUEST_ID)
    access.flush()
    assert len(sink.writes) == 1
    await asyncio.sleep(0)
    assert len(sink.writes) == 1
