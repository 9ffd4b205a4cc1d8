"""ETags on the cached reads, and ``If-None-Match`` -> 304 with no body.

The tag is a strong one, ``"<32 hex>"``: a BLAKE2b-128 digest of the JSON body
bytes as served, so two answers carry the same tag exactly when they are
byte-for-byte equal. It is computed from the body rather than from the cache
entry's version so that it holds whatever served the answer (Redis, PostgreSQL
while Redis is down, a recomputed statistic with the same content), and any
write that changes what a reader sees changes the tag.

``If-None-Match`` is compared weakly, as RFC 9110 section 13.1.2 asks (``W/``
prefixes are ignored); ``*`` matches any current answer. A header that is not a
list of entity tags, or is longer than ``MAX_IF_NONE_MATCH_BYTES`` or holds
more than ``MAX_IF_NONE_MATCH_TAGS`` tags, is ignored: the client gets the full
200 answer, never an error. Only 200 answers of the routes the route table
marks ``cached`` get a tag (``tagged``, from the front); errors
pass untouched. A cached read that kept its answer with its cache entry
(``hita.api.views``) brings its tag along, computed once: no hashing then.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from aiohttp import hdrs, web

from hita.api.wire import StoredResponse
from hita.constants import MAX_IF_NONE_MATCH_BYTES, MAX_IF_NONE_MATCH_TAGS

ETAG_DIGEST_BYTES: Final = 16  # 128 bits: collisions are out of reach
# One entity tag (RFC 9110 section 8.8.3), optionally weak, then a comma or the end.
_TAG_RE: Final = re.compile(r'\s*(?:W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def etag_of(body: bytes) -> str:
    return f'"{hashlib.blake2b(body, digest_size=ETAG_DIGEST_BYTES).hexdigest()}"'


def if_none_match_tags(header: str) -> frozenset[str] | None:
    """The opaque tags of an ``If-None-Match`` value (``{"*"}`` for a star), or
    None when the value is malformed or too long, which means "ignore it"."""
    if len(header) > MAX_IF_NONE_MATCH_BYTES:
        return None
    if header.strip() == "*":
        return frozenset({"*"})
    tags: list[str] = []
    position = 0
    while position < len(header):
        match = _TAG_RE.match(header, position)
        if match is None or len(tags) >= MAX_IF_NONE_MATCH_TAGS:
            return None
        tags.append(match.group(1))
        position = match.end()
    return frozenset(tags) or None


def not_modified(request: web.Request, etag: str) -> bool:
    header = request.headers.get(hdrs.IF_NONE_MATCH)
    if header is None:
        return False
    tags = if_none_match_tags(header)
    return tags is not None and ("*" in tags or etag in tags)


def tagged(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """A 200 answer of a cached read with its ``ETag`` (the one it brings, or
    the digest of its body), or 304 when ``If-None-Match`` holds that tag."""
    if response.status != 200 or not isinstance(response, web.Response):
        return response
    if type(response) is StoredResponse:
        etag: str | None = response.stored_etag  # kept with it, no header map made
    else:
        etag = response.headers.get(hdrs.ETAG)
    if etag is None:
        if not isinstance(response.body, bytes):
            return response
        etag = response.headers[hdrs.ETAG] = etag_of(response.body)
    if hdrs.IF_NONE_MATCH in request.headers and not_modified(request, etag):
        return web.Response(status=304, headers={hdrs.ETAG: etag})
    return response
