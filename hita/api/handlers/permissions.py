"""``/v1.0/permissions/{user_id}...``: ``{success, user_id, permissions: [...]}``."""

from __future__ import annotations

from aiohttp import web

from hita.api import schemas
from hita.api.auth import principal
from hita.api.responses import json_ok, read_json_object
from hita.appkeys import PERMISSION_SERVICE


async def get_permissions(request: web.Request) -> web.Response:
    """``{success, user_id, permissions}``."""
    user_id = schemas.user_id_param(request)
    return json_ok(await request.app[PERMISSION_SERVICE].of_user(user_id))


async def grant_permission(request: web.Request) -> web.Response:
    """``{permission}``; granting one held
    already changes nothing."""
    caller = principal(request)
    user_id = schemas.user_id_param(request)
    body = schemas.load(schemas.PERMISSION, await read_json_object(request))
    service = request.app[PERMISSION_SERVICE]
    return json_ok(await service.grant(caller, user_id, body["permission"]))


async def revoke_permission(request: web.Request) -> web.Response:
    """``{permission}``; revoking one not
    held changes nothing."""
    caller = principal(request)
    user_id = schemas.user_id_param(request)
    body = schemas.load(schemas.PERMISSION, await read_json_object(request))
    service = request.app[PERMISSION_SERVICE]
    return json_ok(await service.revoke(caller, user_id, body["permission"]))
