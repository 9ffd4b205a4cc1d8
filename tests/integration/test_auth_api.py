"""``POST /v1.0/auth/login`` and the body limits on a real route."""

from __future__ import annotations

import io
import time

import jwt

from hita.domain.roles import Role
from tests.integration.conftest import PASSWORD, World, body_of


async def test_login_returns_a_bearer_token_for_the_user(world: World) -> None:
    admin = await world.make_user(Role.ADMIN, username="Front.Desk")
    response = await world.client.post(
        "/v1.0/auth/login", json={"username": "front.desk", "password": PASSWORD}
    )
    assert response.status == 200
    body = await body_of(response)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == world.config.auth.jwt_ttl_s
    claims = jwt.decode(body["access_token"], world.config.auth.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == admin.id
    assert claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == world.config.auth.jwt_ttl_s
    assert abs(claims["iat"] - time.time()) < 60
    token = {"Authorization": f"Bearer {body['access_token']}"}
    response = await world.client.get("/v1.0/user/stats", headers=token)
    assert response.status == 200


async def test_a_wrong_password_and_an_unknown_user_get_the_same_401(world: World) -> None:
    guest = await world.make_user()
    answers = []
    for username, password in [(guest.username, "wrong password"), ("nobody.here", PASSWORD)]:
        response = await world.client.post(
            "/v1.0/auth/login", json={"username": username, "password": password}
        )
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        answers.append(await body_of(response))
    assert answers[0] == answers[1] == {"success": False, "error": "Invalid username or password"}


async def test_an_inactive_user_cannot_log_in(world: World) -> None:
    guest = await world.make_user(is_active=False)
    response = await world.client.post(
        "/v1.0/auth/login", json={"username": guest.username, "password": PASSWORD}
    )
    assert response.status == 403
    assert await body_of(response) == {"success": False, "error": "This account is deactivated"}


async def test_login_input_is_checked(world: World) -> None:
    response = await world.client.post("/v1.0/auth/login", json={"username": "x", "extra": 1})
    assert response.status == 400
    assert set((await body_of(response))["details"]) == {"password", "extra"}


async def test_broken_json_on_login_is_a_json_400(world: World) -> None:
    for raw in (b"{not json", b"[1]", b'"text"'):
        response = await world.client.post(
            "/v1.0/auth/login", data=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        assert (await body_of(response))["success"] is False


async def test_a_2_mb_body_on_login_is_a_json_413(world: World) -> None:
    response = await world.client.post(
        "/v1.0/auth/login",
        data=io.BytesIO(b"x" * (2 * 1024 * 1024)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413
    assert await body_of(response) == {"success": False, "error": "Request body too large"}
