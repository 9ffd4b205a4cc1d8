"""The role matrix of docs/api.md, route by route and caller by caller.

Callers: nobody (401), a plain user acting on another user, a plain user
acting on itself, an admin, a superadmin. Every answer is checked for
password hashes, and every success for its status.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from hita.domain.roles import Role
from tests.integration.conftest import Account, World, body_of

_n = itertools.count(1)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {id}: the target user
    min_role: Role
    self_ok: bool = False
    ok: int = 200

    def body(self, target: Account) -> dict[str, Any] | None:
        if self.path.endswith("/create"):
            n = next(_n)
            return {
                "username": f"made{n}",
                "email": f"made{n}@hotel.example",
                "full_name": "Made Here",
                "password": "a fine password",
            }
        if self.method == "PUT":
            return {
                "username": target.username,
                "email": target.email,
                "full_name": "Renamed Guest",
                "role": "user",
                "is_active": True,
            }
        if self.method == "PATCH":
            return {"full_name": "Renamed Guest"}
        if "/points/" in self.path and self.method == "POST":
            return {"amount": 10, "reason": "stay"}
        if self.path.endswith(("/grant", "/revoke")):
            return {"permission": "reservations.write"}
        return None


ROUTES = [
    Route("POST", "/v1.0/user/create", Role.ADMIN, ok=201),
    Route("GET", "/v1.0/user/list", Role.ADMIN),
    Route("GET", "/v1.0/user/stats", Role.ADMIN),
    Route("GET", "/v1.0/user/{id}", Role.ADMIN, self_ok=True),
    Route("PUT", "/v1.0/user/update/{id}", Role.ADMIN, self_ok=True),
    Route("PATCH", "/v1.0/user/update/{id}", Role.ADMIN, self_ok=True),
    Route("DELETE", "/v1.0/user/delete/{id}", Role.ADMIN),
    Route("POST", "/v1.0/user/{id}/activate", Role.ADMIN),
    Route("POST", "/v1.0/user/{id}/deactivate", Role.ADMIN),
    Route("GET", "/v1.0/dashboard/stats", Role.ADMIN),
    Route("GET", "/v1.0/superadmin/users", Role.SUPERADMIN),
    Route("POST", "/v1.0/points/{id}/add", Role.ADMIN),
    Route("POST", "/v1.0/points/{id}/redeem", Role.ADMIN, self_ok=True),
    Route("GET", "/v1.0/points/{id}/history", Role.ADMIN, self_ok=True),
    Route("GET", "/v1.0/permissions/{id}", Role.ADMIN, self_ok=True),
    Route("POST", "/v1.0/permissions/{id}/grant", Role.ADMIN),
    Route("POST", "/v1.0/permissions/{id}/revoke", Role.ADMIN),
]
CALLERS = ["nobody", "other user", "self", "admin", "superadmin"]
CALLER_ROLES = {"other user": Role.USER, "admin": Role.ADMIN, "superadmin": Role.SUPERADMIN}


def expected(route: Route, caller: str) -> int:
    if caller == "nobody":
        return 401
    if caller == "self":
        return route.ok if route.self_ok else 403
    return route.ok if CALLER_ROLES[caller].at_least(route.min_role) else 403


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_role_matrix(world: World, route: Route, caller: str) -> None:
    target = await world.make_user(Role.USER)
    await world.client.post(
        f"/v1.0/points/{target.id}/add",
        json={"amount": 100, "reason": "welcome"},
        headers=(await world.make_user(Role.ADMIN)).headers,
    )
    headers: dict[str, str] = {}
    if caller == "self":
        headers = target.headers
    elif caller != "nobody":
        headers = (await world.make_user(CALLER_ROLES[caller])).headers

    response = await world.client.request(
        route.method,
        route.path.replace("{id}", target.id),
        json=route.body(target),
        headers=headers,
    )

    body = await body_of(response)
    assert response.status == expected(route, caller), body
    assert body["success"] is (response.status < 400)


ACCOUNT_CHANGES = [
    Route("POST", "/v1.0/points/{id}/add", Role.ADMIN),
    Route("POST", "/v1.0/points/{id}/redeem", Role.ADMIN, self_ok=True),
    Route("POST", "/v1.0/permissions/{id}/grant", Role.ADMIN),
    Route("POST", "/v1.0/permissions/{id}/revoke", Role.ADMIN),
]


@pytest.mark.parametrize("caller", ["admin", "superadmin"])
@pytest.mark.parametrize("route", ACCOUNT_CHANGES, ids=lambda r: f"{r.method} {r.path}")
async def test_only_a_superadmin_changes_a_superadmins_points_and_permissions(
    world: World, route: Route, caller: str
) -> None:
    target = await world.make_user(Role.SUPERADMIN)
    boss = await world.make_user(Role.SUPERADMIN)
    await world.client.post(
        f"/v1.0/points/{target.id}/add",
        json={"amount": 100, "reason": "welcome"},
        headers=boss.headers,
    )
    await world.client.post(
        f"/v1.0/permissions/{target.id}/grant",
        json={"permission": "reservations.write"},
        headers=boss.headers,
    )
    headers = (
        boss.headers if caller == "superadmin" else (await world.make_user(Role.ADMIN)).headers
    )
    path = route.path.replace("{id}", target.id)
    before = await body_of(await world.client.get(f"/v1.0/user/{target.id}", headers=boss.headers))

    body = route.body(target)
    if route.path.endswith("/grant"):
        body = {"permission": "rooms.read"}  # one it does not hold yet
    response = await world.client.post(path, json=body, headers=headers)

    answer = await body_of(response)
    after = await body_of(await world.client.get(f"/v1.0/user/{target.id}", headers=boss.headers))
    if caller == "admin":
        assert response.status == 403, answer
        assert answer["error"] == "Only a superadmin may modify a superadmin"
        assert after["user"]["points"] == before["user"]["points"] == 100
        assert after["user"]["permissions"] == before["user"]["permissions"]
    else:
        assert response.status == 200, answer
        assert after["user"] != before["user"]
