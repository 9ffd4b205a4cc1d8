"""Answers of the cached reads, kept ready to send: body bytes and ``ETag``.

Each cached read asks its service for a ``View`` (``hita.cache.view``) that
renders the value into the bytes that go on the wire and their entity tag,
once; while L1 holds the entry, the next read of it is a lookup and a write,
with nothing encoded or hashed (the front compares
``If-None-Match`` with the tag it brings). A caller who may see other fields
would need a view of its own name; today every caller of a cached read sees
the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import hdrs, web

from hita.api.etag import etag_of
from hita.api.responses import JSON_UTF8, json_body
from hita.cache.view import NotHeld, View
from hita.domain.typedefs import JsonDict


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    etag: str

    def response(self) -> web.Response:
        return web.Response(
            body=self.body, headers={hdrs.CONTENT_TYPE: JSON_UTF8, hdrs.ETAG: self.etag}
        )


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
