"""Permissions: get, grant, revoke."""

from __future__ import annotations

from hita.domain.roles import Role
from tests.integration.conftest import World, body_of


async def test_grant_and_revoke_are_idempotent_and_answer_the_list(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    base = f"/v1.0/permissions/{guest.id}"
    for permission in ("rooms.read", "reservations.write", "rooms.read"):
        response = await world.client.post(
            f"{base}/grant", json={"permission": permission}, headers=admin.headers
        )
        assert response.status == 200
    assert await body_of(response) == {
        "success": True,
        "user_id": guest.id,
        "permissions": ["reservations.write", "rooms.read"],
    }
    response = await world.client.get(base, headers=guest.headers)
    assert (await body_of(response))["permissions"] == ["reservations.write", "rooms.read"]
    for _ in range(2):
        response = await world.client.post(
            f"{base}/revoke", json={"permission": "rooms.read"}, headers=admin.headers
        )
        assert (await body_of(response))["permissions"] == ["reservations.write"]


async def test_unknown_users_and_bad_names(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    for method, path in [
        ("GET", "/v1.0/permissions/1000000000"),
        ("POST", "/v1.0/permissions/1000000000/grant"),
        ("POST", "/v1.0/permissions/1000000000/revoke"),
    ]:
        response = await world.client.request(
            method, path, json={"permission": "rooms.read"}, headers=admin.headers
        )
        assert response.status == 404, path
        assert (await body_of(response))["error"] == "User not found"
    response = await world.client.post(
        f"/v1.0/permissions/{admin.id}/grant",
        json={"permission": "Rooms Read"},
        headers=admin.headers,
    )
    assert response.status == 400
    assert "permission" in (await body_of(response))["details"]
