"""``/v1.0/points/{user_id}/...``: the loyalty points ledger.

A change answers ``{success, user_id, points: new balance, transaction: {id,
type: add|redeem, amount, reason, balance_after, created_at}}``. With an
``Idempotency-Key``, a change already made with that key for that user is
answered again as it was, with ``Idempotent-Replayed: true``, and not made twice.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from hita.api import schemas
from hita.api.auth import principal
from hita.api.responses import json_ok, read_json_object
from hita.appkeys import POINTS_SERVICE
from hita.services.points import PointsChange

REPLAYED_HEADER: Final = "Idempotent-Replayed"


async def add_points(request: web.Request) -> web.Response:
    """``{amount, reason}``; an ``Idempotency-Key`` makes a retry answer again."""
    caller = principal(request)
    user_id = schemas.user_id_param(request)
    key = schemas.idempotency_key(request)
    body = schemas.load(schemas.POINTS, await read_json_object(request))
    points = request.app[POINTS_SERVICE]
    return _answer(await points.add(caller, user_id, body["amount"], body["reason"], key))


async def redeem_points(request: web.Request) -> web.Response:
    """``{amount, reason}``; 422 above the balance."""
    user_id = schemas.user_id_param(request)
    caller = principal(request)
    key = schemas.idempotency_key(request)
    body = schemas.load(schemas.POINTS, await read_json_object(request))
    points = request.app[POINTS_SERVICE]
    return _answer(await points.redeem(caller, user_id, body["amount"], body["reason"], key))


def _answer(change: PointsChange) -> web.Response:
    response = json_ok(change.result)
    if change.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


async def points_history(request: web.Request) -> web.Response:
    """``?page=&page_size=`` -> ``{success, user_id,
    transactions: [...], pagination}``, newest first."""
    user_id = schemas.user_id_param(request)
    page = schemas.load(schemas.PAGE_QUERY, schemas.query_params(request))
    result = await request.app[POINTS_SERVICE].history(user_id, page["page"], page["page_size"])
    return json_ok(result)
