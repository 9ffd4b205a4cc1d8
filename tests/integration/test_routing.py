"""Routing: each path answers its own methods, HEAD where GET, and a 405
naming exactly those methods otherwise; a fixed path is never an id."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hita.api.routes import ROUTES
from hita.appkeys import OPENAPI
from hita.domain.roles import Role
from tests.integration.conftest import World, body_of

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
SOME_ID = "5779356081"
SOME_ASSET = "console.js"


def concrete(template: str, user_id: str = SOME_ID) -> str:
    """A path the template matches: its parameters filled in."""
    return template.replace("{user_id}", user_id).replace("{asset}", SOME_ASSET)


def documented_methods(world: World) -> dict[str, set[str]]:
    """Path template -> its methods, as the OpenAPI document lists them."""
    document: dict[str, Any] = orjson.loads(world.app[OPENAPI])
    return {
        path: {method.upper() for method in item if method != "parameters"}
        for path, item in document["paths"].items()
    }


def allowed(methods: set[str]) -> set[str]:
    return methods | {"HEAD"} if "GET" in methods else methods


async def test_a_method_a_path_lacks_is_a_405_listing_exactly_its_methods(world: World) -> None:
    """No token needed: the 405 comes before authentication, as a 404 does."""
    checked = 0
    for template, methods in documented_methods(world).items():
        path = concrete(template)
        expected = allowed(methods)
        for method in sorted(set(METHODS) - expected):
            response = await world.client.request(method, path)
            assert response.status == 405, (method, path)
            assert set(response.headers["Allow"].split(",")) == expected, (method, path)
            if method == "HEAD":
                assert await response.read() == b""
            else:
                assert await body_of(response) == {"success": False, "error": "Method not allowed"}
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("path", ["/v1.0/user/create", "/v1.0/user/list", "/v1.0/user/stats"])
async def test_a_fixed_path_is_never_taken_for_a_user_id(world: World, path: str) -> None:
    admin = await world.make_user(Role.ADMIN)
    served = {route.method for route in ROUTES if route.path == path}
    for method in ("GET", "POST", "OPTIONS"):
        response = await world.client.request(method, path, headers=admin.headers, json={})
        if method in served:
            assert response.status != 405, (method, path)
        else:
            assert response.status == 405, (method, path)
            assert set(response.headers["Allow"].split(",")) == allowed(served)
        assert "Invalid user id" not in await response.text(), (method, path)


async def test_head_answers_every_get_route_as_get_without_a_body(world: World) -> None:
    admin = await world.make_user(Role.SUPERADMIN)
    gets = [route.path for route in ROUTES if route.method == "GET"]
    assert len(gets) > 10
    for template in gets:
        path = concrete(template, admin.id)
        get = await world.client.get(path, headers=admin.headers)
        head = await world.client.head(path, headers=admin.headers)
        assert (head.status, head.content_type) == (get.status, get.content_type), path
        assert get.status == 200, path
        assert await head.read() == b"", path
        assert int(head.headers["Content-Length"]) > 0, path


async def test_head_needs_the_token_get_needs(world: World) -> None:
    response = await world.client.head("/v1.0/user/list")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await response.read() == b""
    assert (await world.client.head("/v1.0/health")).status == 200
