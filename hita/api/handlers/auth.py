"""``POST /v1.0/auth/login``."""

from __future__ import annotations

from aiohttp import web

from hita.api import schemas
from hita.api.responses import json_ok, read_json_object
from hita.appkeys import AFFECTED_USER, AUTH_SERVICE


async def login(request: web.Request) -> web.Response:
    """``{username, password}`` -> 200 ``{success, access_token, token_type: "Bearer",
    expires_in}``; 401 for a wrong username or password, 403 for a deactivated user."""
    body = schemas.load(schemas.LOGIN, await read_json_object(request))
    login = await request.app[AUTH_SERVICE].login(body["username"], body["password"])
    request[AFFECTED_USER] = login.user_id  # last_login_at changed
    return json_ok(login.token)
