"""Answers of the cached reads, kept ready to send: body bytes and ``ETag``.

Each cached read asks its service for a ``View`` (``hita.cache.view``) that
renders the value into the bytes that go on the wire and their entity tag,
once, with the head of its 200 answer; while L1 holds the entry, the next
read of it is a lookup and one write (``hita.api.wire``), with nothing
encoded, hashed or serialized (the front compares
``If-None-Match`` with the tag it brings). A caller who may see other fields
would need a view of its own name; today every caller of a cached read sees
the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from hita.api.etag import etag_of
from hita.api.responses import json_body
from hita.api.wire import StoredResponse, stored_head
from hita.cache.view import NotHeld, View
from hita.domain.typedefs import JsonDict


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    etag: str
    # Its head as it goes on the wire, around the request id (hita.api.wire).
    head: bytes = field(init=False, repr=False, compare=False)
    length_line: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head, length_line = stored_head(self.etag, self.body)
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "length_line", length_line)

    def response(self) -> web.Response:
        return StoredResponse(self)


def held(found: Answer | NotHeld) -> web.Response | None:
    """The response of a view L1 holds; None when it holds none."""
    return None if isinstance(found, NotHeld) else found.response()


def answer(data: Mapping[str, Any]) -> Answer:
    body = json_body({"success": True, **data})
    return Answer(body, etag_of(body))


def _user(user: JsonDict | None) -> Answer | None:
    return None if user is None else answer({"user": user})


def _stats(stats: JsonDict) -> Answer:
    return answer({"stats": stats})


USER: Final = View("http:user", _user)  # None: no such user
PAGE: Final = View("http:page", answer)  # {users, pagination}
STATS: Final = View("http:stats", _stats)
