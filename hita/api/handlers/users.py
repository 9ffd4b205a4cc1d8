"""``/v1.0/user/...`` and ``/v1.0/superadmin/users``.

Bodies: a user is ``{"success": true, "user": {id, username, email, full_name,
role, is_active, points, permissions[], created_at, updated_at,
last_login_at}}``; a list is ``{"success": true, "users": [summary...],
"pagination": {page, page_size, total, pages}}`` where a summary is a user
without ``permissions`` and ``last_login_at``.
"""

from __future__ import annotations

from aiohttp import web
from marshmallow import Schema

from hita.api import answers, schemas
from hita.api.auth import principal
from hita.api.responses import json_ok, read_json_object
from hita.appkeys import AFFECTED_USER, USER_SERVICE
from hita.domain.users import NewUser, UserChanges, UserListQuery
from hita.errors import UserNotFound


async def create_user(request: web.Request) -> web.Response:
    """201 ``{success, user}``; 409 when the username or email is taken;
    only a superadmin may create a superadmin."""
    caller = principal(request)
    new = schemas.load_as(schemas.CREATE_USER, await read_json_object(request), NewUser)
    user = await request.app[USER_SERVICE].create_user(caller, new)
    request[AFFECTED_USER] = user["id"]
    return json_ok({"user": user}, status=201)


async def list_users(request: web.Request) -> web.Response:
    """``?page=&page_size=&role=&is_active=&search=`` -> ``{success, users,
    pagination}``, newest first; superadmins are listed only by /superadmin/users."""
    query = schemas.query_as(request, schemas.USER_LIST_QUERY, UserListQuery)
    return (await request.app[USER_SERVICE].list_view(query, answers.PAGE)).response()


def held_list_users(request: web.Request) -> web.Response | None:
    query = schemas.query_as(request, schemas.USER_LIST_QUERY, UserListQuery)
    found = request.app[USER_SERVICE].held_list_view(query, answers.PAGE)
    return answers.held(found)


async def superadmin_users(request: web.Request) -> web.Response:
    """``?page=&page_size=`` -> ``{success, users, pagination}``, all users."""
    page = schemas.query_as(request, schemas.PAGE_QUERY, dict)
    service = request.app[USER_SERVICE]
    found = await service.superadmin_list_view(page["page"], page["page_size"], answers.PAGE)
    return found.response()


def held_superadmin_users(request: web.Request) -> web.Response | None:
    page = schemas.query_as(request, schemas.PAGE_QUERY, dict)
    service = request.app[USER_SERVICE]
    found = service.held_superadmin_list_view(page["page"], page["page_size"], answers.PAGE)
    return answers.held(found)


async def get_user(request: web.Request) -> web.Response:
    """``{success, user}``."""
    found = await request.app[USER_SERVICE].user_view(schemas.user_id_param(request), answers.USER)
    if found is None:
        raise UserNotFound()
    return found.response()


def held_user(request: web.Request) -> web.Response | None:
    service = request.app[USER_SERVICE]
    found = service.held_user_view(schemas.user_id_param(request), answers.USER)
    if found is None:
        raise UserNotFound()
    return answers.held(found)


async def _update(request: web.Request, schema: Schema) -> web.Response:
    user_id = schemas.user_id_param(request)
    caller = principal(request)
    changes = schemas.load_as(schema, await read_json_object(request), UserChanges)
    user = await request.app[USER_SERVICE].update_user(caller, user_id, changes)
    return json_ok({"user": user})


async def put_user(request: web.Request) -> web.Response:
    """PUT: replace every updatable field (``password`` optional). ``{success, user}``.
    A plain user may change only its own full_name, email and password."""
    return await _update(request, schemas.PUT_USER)


async def patch_user(request: web.Request) -> web.Response:
    """PATCH: change the fields given. ``{success, user}``."""
    return await _update(request, schemas.PATCH_USER)


async def delete_user(request: web.Request) -> web.Response:
    """``{success, message, user_id}``; 422 for deleting oneself."""
    caller = principal(request)
    user_id = schemas.user_id_param(request)
    await request.app[USER_SERVICE].delete_user(caller, user_id)
    return json_ok({"message": "User deleted", "user_id": user_id})


async def _set_active(request: web.Request, active: bool) -> web.Response:
    caller = principal(request)
    user_id = schemas.user_id_param(request)
    user = await request.app[USER_SERVICE].set_active(caller, user_id, active)
    return json_ok({"user": user})


async def activate_user(request: web.Request) -> web.Response:
    """``{success, user}``."""
    return await _set_active(request, True)


async def deactivate_user(request: web.Request) -> web.Response:
    """``{success, user}``; 422 for deactivating oneself. The user's
    tokens stop working at once."""
    return await _set_active(request, False)
