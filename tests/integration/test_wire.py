"""``hita.api.wire``: a kept answer written from its stored bytes is exactly
what aiohttp would have written, byte for byte but the clock in ``Date``,
for every shape of request (HEAD, HTTP/1.0, ``Connection``, pipelining), and
the plain case skips aiohttp's own preparing and writing (the reason for it)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final
from unittest import mock

import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hita.api.answers import Answer
from hita.api.etag import etag_of
from hita.api.middlewares import REQUEST_ID_HEADER
from hita.api.responses import JSON_UTF8
from hita.api.wire import StoredResponse, with_request_id

ANSWER: Final = web.AppKey("answer", Answer)
EXTRA: Final = "X-Extra"  # a header a request asks a handler to add (b"X-Extra: yes")
_DATE: Final = re.compile(rb"\r\nDate: [^\r]*\r\n")
READ_TIMEOUT_S: Final = 10.0


async def _stored(request: web.Request) -> web.StreamResponse:
    response = request.app[ANSWER].response()
    with_request_id(response, request.headers["X-Id"])  # as the front does
    if EXTRA in request.headers:  # something asks for aiohttp's headers: they are made
        response.headers[EXTRA] = request.headers[EXTRA]
    return response


async def _own(request: web.Request) -> web.StreamResponse:
    """The same answer, made and written by aiohttp alone."""
    answer = request.app[ANSWER]
    response = web.Response(
        body=answer.body, headers={hdrs.CONTENT_TYPE: JSON_UTF8, hdrs.ETAG: answer.etag}
    )
    response.headers[REQUEST_ID_HEADER] = request.headers["X-Id"]
    if EXTRA in request.headers:
        response.headers[EXTRA] = request.headers[EXTRA]
    return response


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[int]:
    app = web.Application()
    app[ANSWER] = answer
    app.router.add_get("/stored", _stored)
    app.router.add_get("/own", _own)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _request(
    method: str, path: str, version: str, connection: str | None, rid: str, *, extra: bool = False
) -> bytes:
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1", f"X-Id: {rid}"]
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if extra:
        lines.append(f"{EXTRA}: yes")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _exchange(port: int, method: str, requests: list[bytes]) -> list[bytes]:
    """Send ``requests`` at once (pipelined) on one connection; each answer, its
    ``Date`` blanked; after the last, what the server writes next within a
    moment (b"then ": it closed the connection; "kept alive": nothing)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        writer.write(b"".join(requests))
        async with asyncio.timeout(READ_TIMEOUT_S):
            for _ in requests:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
                if method == "HEAD" or length is None:
                    body = b""
                else:
                    body = await reader.readexactly(int(length[1]))
                answers.append(_DATE.sub(b"\r\nDate: -\r\n", head) + body)
        try:  # what follows: more bytes, the end of the connection, or nothing
            answers.append(b"then " + await asyncio.wait_for(reader.read(1 << 16), 0.05))
        except TimeoutError:
            answers.append(b"kept alive")
    finally:
        writer.close()
    return answers


rids = st.from_regex(r"[A-Za-z0-9._-]{8,64}", fullmatch=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=3000),
    method=st.sampled_from(["GET", "HEAD"]),
    version=st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
    connection=st.sampled_from([None, "close", "keep-alive", "Keep-Alive, Upgrade-Nothing"]),
    request_ids=st.lists(rids, min_size=1, max_size=3),
    extra=st.booleans(),
)
def test_a_stored_answer_is_written_as_aiohttp_writes_it(
    *,
    body: bytes,
    method: str,
    version: str,
    connection: str | None,
    request_ids: list[str],
    extra: bool,
) -> None:
    answer = Answer(body, etag_of(body))
    if connection != "keep-alive" and (connection is not None or version == "HTTP/1.0"):
        request_ids = request_ids[:1]  # nothing may follow a request that closes

    async def scenario() -> None:
        async with serving(answer) as port:
            for path in ("/stored", "/own"):
                requests = [
                    _request(method, path, version, connection, r, extra=extra) for r in request_ids
                ]
                found = await _exchange(port, method, requests)
                if path == "/stored":
                    stored = found
                else:
                    assert stored == found

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("path", "prepared_by_aiohttp"),
    [("/stored", 0), ("/own", 3)],
    ids=["stored: one write, aiohttp prepares nothing", "control: aiohttp's own answer"],
)
async def test_the_plain_case_skips_aiohttps_preparing(
    path: str, prepared_by_aiohttp: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    original = web.StreamResponse._start

    async def counting(self: web.StreamResponse, request: Any) -> Any:
        started.append(self)
        return await original(self, request)

    monkeypatch.setattr(web.StreamResponse, "_start", counting)
    body = b'{"success":true}'
    async with serving(Answer(body, etag_of(body))) as port:
        requests = [_request("GET", path, "HTTP/1.1", None, f"request-{i}") for i in range(3)]
        answers = await _exchange(port, "GET", requests)
    assert [a.endswith(body) for a in answers[:3]] == [True] * 3
    assert answers[3] == b"kept alive"
    assert len(started) == prepared_by_aiohttp


def _mocked(**protocol: Any) -> web.Request:
    request = make_mocked_request("GET", "/stored", protocol=mock.Mock(**protocol))
    request.transport.is_closing.return_value = False  # type: ignore[union-attr]
    return request


async def test_a_client_that_stopped_reading_gets_aiohttps_own_flow_control() -> None:
    """With the connection's writing paused, aiohttp's writer (which waits for
    the client) writes the answer, not the stored write."""
    body = b"{}"
    response = StoredResponse(Answer(body, etag_of(body)))
    with_request_id(response, "request-1")
    with mock.patch.object(web.Response, "prepare", autospec=True) as aiohttps:
        await response.prepare(_mocked(writing_paused=True))
    aiohttps.assert_awaited_once()


async def test_a_client_gone_is_a_connection_reset_as_with_aiohttp() -> None:
    body = b"{}"
    response = StoredResponse(Answer(body, etag_of(body)))
    with_request_id(response, "request-1")
    request = _mocked(writing_paused=False)
    request.transport.is_closing.return_value = True  # type: ignore[union-attr]
    with pytest.raises(ConnectionResetError):
        await response.prepare(request)
    request.transport.write.assert_not_called()  # type: ignore[union-attr]


def test_a_stored_answer_asked_for_aiohttps_parts_is_aiohttps_response() -> None:
    """Made light, it becomes aiohttp's ``Response`` of the same answer as soon
    as anything asks for what only that has: its headers (with the request id
    given before), its mapping, a new body."""
    body = b'{"success":true}'
    answer = Answer(body, etag_of(body))
    own = web.Response(body=body, headers={hdrs.CONTENT_TYPE: JSON_UTF8, hdrs.ETAG: answer.etag})
    own.headers[REQUEST_ID_HEADER] = "request-1"

    response = StoredResponse(answer)
    with_request_id(response, "request-1")
    assert (response.status, response.body, response.stored_etag) == (200, body, answer.etag)
    assert list(response.headers.items()) == list(own.headers.items())
    with_request_id(response, "request-2")  # once made, into its header map
    assert response.headers[REQUEST_ID_HEADER] == "request-2"

    note = web.ResponseKey("note", int)
    mapped = StoredResponse(answer)
    mapped[note] = 1
    assert mapped[note] == 1
    assert len(mapped) == 1

    rebodied = StoredResponse(answer)
    rebodied.body = b"[]"
    assert (rebodied.body, rebodied.content_length) == (b"[]", 2)
