"""JSON responses: orjson encoding, the contract's success and error shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from hita.errors import InvalidInput

_DUMPS_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def dumps(data: Any) -> str:
    return orjson.dumps(data, option=_DUMPS_OPTIONS).decode()


def json_ok(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response({"success": True, **body}, status=status, dumps=dumps)


def json_error(status: int, error: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"success": False, "error": error, **extra}, status=status, dumps=dumps
    )


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
