"""``/v1.0/points/{user_id}/...``: the loyalty points ledger.

A change answers ``{success, user_id, points: new balance, transaction: {id,
type: add|redeem, amount, reason, balance_after, created_at}}``.
"""

from __future__ import annotations

from aiohttp import web

from hita.api import schemas
from hita.api.auth import principal
from hita.api.responses import json_ok, read_json_object
from hita.appkeys import POINTS_SERVICE


async def add_points(request: web.Request) -> web.Response:
    """``{amount, reason}``."""
    caller = principal(request)
    user_id = schemas.user_id_param(request)
    body = schemas.load(schemas.POINTS, await read_json_object(request))
    result = await request.app[POINTS_SERVICE].add(caller, user_id, body["amount"], body["reason"])
    return json_ok(result)


async def redeem_points(request: web.Request) -> web.Response:
    """``{amount, reason}``; 422 above the balance."""
    user_id = schemas.user_id_param(request)
    caller = principal(request)
    body = schemas.load(schemas.POINTS, await read_json_object(request))
    result = await request.app[POINTS_SERVICE].redeem(
        caller, user_id, body["amount"], body["reason"]
    )
    return json_ok(result)


async def points_history(request: web.Request) -> web.Response:
    """``?page=&page_size=`` -> ``{success, user_id,
    transactions: [...], pagination}``, newest first."""
    user_id = schemas.user_id_param(request)
    page = schemas.load(schemas.PAGE_QUERY, schemas.query_params(request))
    result = await request.app[POINTS_SERVICE].history(user_id, page["page"], page["page_size"])
    return json_ok(result)
