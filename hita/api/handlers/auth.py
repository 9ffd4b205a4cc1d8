"""``POST /v1.0/auth/login``."""

from __future__ import annotations

import ipaddress

from aiohttp import hdrs, web

from hita.api import schemas
from hita.api.responses import json_ok, read_json_object
from hita.appkeys import AFFECTED_USER, AUTH_SERVICE, CONFIG


def client_address(request: web.Request) -> str:
    """Who is logging in, for throttling: the peer's address, or behind one
    trusted reverse proxy (``TRUST_X_FORWARDED_FOR``) the address it appended
    last to ``X-Forwarded-For`` (earlier entries are the client's to invent)."""
    if request.app[CONFIG].login_throttle.trust_forwarded_for:
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        last = forwarded[-1].split(",")[-1].strip() if forwarded else ""
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            pass  # no usable entry: the proxy's own address is all we know
    return request.remote or ""


async def login(request: web.Request) -> web.Response:
    """``{username, password}`` -> 200 ``{success, access_token, token_type: "Bearer",
    expires_in}``; 401 for a wrong username or password, 403 for a deactivated user,
    429 with ``Retry-After`` after too many failures for the username or address."""
    body = schemas.load(schemas.LOGIN, await read_json_object(request))
    login = await request.app[AUTH_SERVICE].login(
        body["username"], body["password"], client_address(request)
    )
    request[AFFECTED_USER] = login.user_id  # last_login_at changed
    return json_ok(login.token)
