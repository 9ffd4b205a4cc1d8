"""A kept answer written as it goes on the wire: its head and body in one write.

aiohttp writes a response in many small steps: ``prepare`` works out the
length, the keep-alive and the default headers, serializes every header, hands
them to the stream writer, and ``write_eof`` joins them with the body. For a
200 answer whose body and tag L1 keeps (``hita.api.answers.Answer``) almost all
of that is known in advance: the status line, ``Content-Type``, ``ETag`` and
``Content-Length`` are kept with the answer as bytes, once. ``StoredResponse``
is aiohttp's ``Response`` with those bytes: when the request is the plain case
(GET over HTTP/1.1, kept alive, a client reading its answers, the headers the
service set and no others), its ``prepare`` adds the request id, ``Date`` and
``Server`` (aiohttp's own values) and writes head and body at once, which is
exactly what aiohttp would have sent, header for header in the same order.
Anything else (HEAD, HTTP/1.0, ``Connection: close``, a client that stopped
reading, a header added on the way) takes aiohttp's own way, so its rules
(an empty body for HEAD, the ``Connection`` header, flow control) stay its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.payload import Payload

from hita.api.middlewares import REQUEST_ID_HEADER
from hita.api.responses import JSON_UTF8

if TYPE_CHECKING:
    from hita.api.answers import Answer

# What aiohttp's writer would put after the service's headers, in its order.
_SERVER_LINE: Final = f"\r\n{hdrs.SERVER}: {SERVER_SOFTWARE}\r\n\r\n".encode("latin-1")
_REQUEST_ID_NAME: Final = f"{REQUEST_ID_HEADER}: ".encode("latin-1")
_DATE_NAME: Final = f"\r\n{hdrs.DATE}: ".encode("latin-1")


def stored_head(etag: str, body: bytes) -> tuple[bytes, bytes]:
    """The head of a 200 JSON answer as aiohttp serializes it, before and after
    the request id: the status line, ``Content-Type`` and ``ETag``; then
    ``Content-Length`` (aiohttp adds it when it prepares the answer)."""
    before = f"HTTP/1.1 200 OK\r\n{hdrs.CONTENT_TYPE}: {JSON_UTF8}\r\n{hdrs.ETAG}: {etag}\r\n"
    after = f"\r\n{hdrs.CONTENT_LENGTH}: {len(body)}"
    return before.encode("latin-1"), after.encode("latin-1")


class StoredResponse(web.Response):
    """The 200 answer of ``answer``, written from its stored bytes when the
    request allows it (module docstring); otherwise aiohttp's own response.

    It is made per request, so it is made light: aiohttp's ``Response`` (its
    header map, its body's checks) is built only when something asks for it,
    its ``headers`` or the way aiohttp prepares it. The front gives it the
    request id with ``with_request_id``, and ``tagged`` reads its ``stored_etag``;
    neither builds it."""

    _status = 200
    _reason = "OK"
    _built = False
    _request_id: str | None = None

    def __init__(self, answer: Answer) -> None:  # aiohttp's own: ``_build``
        self._answer = answer

    @property
    def stored_etag(self) -> str:
        return self._answer.etag

    def _build(self) -> None:
        """aiohttp's ``Response`` of this answer, as the plain way would make it."""
        if self._built:
            return
        self._built = True
        status, reason = self._status, self._reason
        headers: dict[str, str] = {hdrs.CONTENT_TYPE: JSON_UTF8, hdrs.ETAG: self._answer.etag}
        if self._request_id is not None:
            headers[REQUEST_ID_HEADER] = self._request_id
        web.Response.__init__(self, body=self._answer.body, headers=headers)
        self._set_status(status, reason)

    def __getattr__(self, name: str) -> Any:
        """Anything of aiohttp's ``Response`` not made yet (its header map,
        its mapping): made now, as aiohttp would have."""
        if self._built or name.startswith("__"):
            raise AttributeError(name)
        self._build()
        return getattr(self, name)

    @property
    def body(self) -> bytes | bytearray | Payload | None:
        return self._answer.body if not self._built else self._body

    @body.setter
    def body(self, body: Any) -> None:
        self._build()
        web.Response.body.fset(self, body)  # type: ignore[attr-defined]

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        transport = request.transport
        if (
            self._built  # headers asked for: they may have changed
            or transport is None
            or self._eof_sent
            or self._payload_writer is not None
            or self._keep_alive is not None  # force_close()
            or self._status != 200
            or (request_id := self._request_id) is None
            or request.method != hdrs.METH_GET
            or request.version != HttpVersion11
            or not request.keep_alive
            or request.protocol.writing_paused  # aiohttp's writer waits for the client
            or not isinstance(request, web.Request)
            or request.app.on_response_prepare  # hooks see aiohttp's way
        ):
            self._build()
            return await super().prepare(request)
        if transport.is_closing():  # as aiohttp's writer: the client left
            raise ClientConnectionResetError("Cannot write to closing transport")
        answer = self._answer
        transport.write(
            b"".join(
                (
                    answer.head,
                    _REQUEST_ID_NAME,
                    request_id.encode("latin-1"),
                    answer.length_line,
                    _DATE_NAME,
                    rfc822_formatted_time().encode("latin-1"),
                    _SERVER_LINE,
                    answer.body,
                )
            )
        )
        self._keep_alive = True
        self._eof_sent = True
        self._body_length = len(answer.body)
        return None


def with_request_id(response: web.StreamResponse, request_id: str) -> None:
    """``response`` with its ``X-Request-ID`` header (a stored answer keeps it
    for its write, built into no header map)."""
    if type(response) is StoredResponse and not response._built:
        response._request_id = request_id
    else:
        response.headers[REQUEST_ID_HEADER] = request_id
