"""JSON responses: orjson encoding, the contract's success and error shapes.

The body is orjson's bytes as they are: ``web.json_response`` would take a
``str`` and encode it again (measured in docs/benchmarks.md, "The rest of a
request's cost")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import hdrs, web

from hita.errors import InvalidInput

_DUMPS_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
# The header as aiohttp would build it from content_type and charset, given as
# a whole: its property setters parse and rebuild it on every response.
JSON_UTF8: Final = "application/json; charset=utf-8"


def json_body(data: Any) -> bytes:
    return orjson.dumps(data, option=_DUMPS_OPTIONS)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json_body(data), status=status, headers={hdrs.CONTENT_TYPE: JSON_UTF8})


def json_ok(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return json_response({"success": True, **body}, status)


def json_error(status: int, error: str, **extra: Any) -> web.Response:
    return json_response({"success": False, "error": error, **extra}, status)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; malformed or non-object bodies are a 400.

    A body over ``client_max_size`` makes aiohttp raise 413 here, which the
    error middleware turns into the JSON error.
    """
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("Malformed JSON body") from None
    if not isinstance(data, dict):
        raise InvalidInput("The JSON body must be an object")
    return data
