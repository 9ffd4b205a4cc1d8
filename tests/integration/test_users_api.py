"""The user routes: successes, and each error status with its body."""

from __future__ import annotations

from typing import Any

import pytest

from hita.domain.roles import Role
from tests.integration.conftest import PASSWORD, World, body_of

NEW = {
    "username": "Anna.Smith",
    "email": "Anna@Hotel.example",
    "full_name": "Anna Smith",
    "password": "a fine password",
}


async def test_an_admin_creates_a_user_who_can_log_in(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    response = await world.client.post("/v1.0/user/create", json=NEW, headers=admin.headers)
    assert response.status == 201
    user = (await body_of(response))["user"]
    assert len(user["id"]) == 10
    assert user["id"].isdigit()
    assert {k: user[k] for k in ("username", "email", "role", "is_active", "points")} == {
        "username": "Anna.Smith",
        "email": "Anna@Hotel.example",
        "role": "user",
        "is_active": True,
        "points": 0,
    }
    assert user["permissions"] == []
    assert user["last_login_at"] is None
    assert user["created_at"].endswith("Z")
    login = await world.client.post(
        "/v1.0/auth/login", json={"username": "anna.smith", "password": NEW["password"]}
    )
    assert login.status == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "ANNA.SMITH", "email": "other@hotel.example"}, "username"),
        ({"username": "someone.else", "email": "anna@hotel.EXAMPLE"}, "email"),
    ],
)
async def test_duplicates_are_a_409_naming_the_field(
    world: World, change: dict[str, str], field: str
) -> None:
    admin = await world.make_user(Role.ADMIN)
    assert (await world.client.post("/v1.0/user/create", json=NEW, headers=admin.headers)).ok
    response = await world.client.post(
        "/v1.0/user/create", json={**NEW, **change}, headers=admin.headers
    )
    assert response.status == 409
    assert await body_of(response) == {
        "success": False,
        "error": f"A user with this {field} already exists",
    }


async def test_an_update_to_a_taken_username_is_a_409(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    other = await world.make_user()
    response = await world.client.patch(
        f"/v1.0/user/update/{other.id}", json={"username": admin.username}, headers=admin.headers
    )
    assert response.status == 409
    assert "username" in (await body_of(response))["error"]


async def test_bad_input_is_a_400_with_field_details(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    response = await world.client.post(
        "/v1.0/user/create",
        json={**NEW, "email": "nope", "role": "root", "nickname": "x"},
        headers=admin.headers,
    )
    assert response.status == 400
    body = await body_of(response)
    assert body["error"] == "Invalid input"
    assert set(body["details"]) == {"email", "role", "nickname"}


async def test_superadmins_are_made_only_by_superadmins(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    boss = await world.make_user(Role.SUPERADMIN)
    body = {**NEW, "role": "superadmin"}
    response = await world.client.post("/v1.0/user/create", json=body, headers=admin.headers)
    assert response.status == 403
    response = await world.client.post("/v1.0/user/create", json=body, headers=boss.headers)
    assert response.status == 201
    assert (await response.json())["user"]["role"] == "superadmin"


async def test_an_admin_cannot_promote_anyone_to_superadmin(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    boss = await world.make_user(Role.SUPERADMIN)
    guest = await world.make_user()
    promote = {"role": "superadmin"}
    for target in (guest, admin):
        response = await world.client.patch(
            f"/v1.0/user/update/{target.id}", json=promote, headers=admin.headers
        )
        assert response.status in (403, 422)
    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json=promote, headers=admin.headers
    )
    assert response.status == 403
    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json=promote, headers=boss.headers
    )
    assert response.status == 200
    assert (await response.json())["user"]["role"] == "superadmin"
    # and the admin cannot touch the superadmin it now is
    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "X"}, headers=admin.headers
    )
    assert response.status == 403


async def test_put_replaces_and_patch_changes_only_what_is_given(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    put = {
        "username": "renamed",
        "email": "renamed@hotel.example",
        "full_name": "Re Named",
        "role": "admin",
        "is_active": False,
    }
    response = await world.client.put(
        f"/v1.0/user/update/{guest.id}", json=put, headers=admin.headers
    )
    assert response.status == 200
    user = (await body_of(response))["user"]
    assert {k: user[k] for k in put} == put
    assert user["updated_at"] > user["created_at"]

    response = await world.client.put(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "Only"}, headers=admin.headers
    )
    assert response.status == 400
    assert set((await response.json())["details"]) == {"username", "email", "role", "is_active"}

    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "Only"}, headers=admin.headers
    )
    user = (await body_of(response))["user"]
    assert user["full_name"] == "Only"
    assert user["username"] == "renamed"

    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={}, headers=admin.headers
    )
    assert response.status == 400


async def test_a_user_changes_its_own_name_email_and_password_only(world: World) -> None:
    guest = await world.make_user()
    path = f"/v1.0/user/update/{guest.id}"
    change = {"full_name": "New Me", "email": "new.me@hotel.example", "password": "brand new pw"}
    response = await world.client.patch(path, json=change, headers=guest.headers)
    assert response.status == 200
    login = await world.client.post(
        "/v1.0/auth/login", json={"username": guest.username, "password": "brand new pw"}
    )
    assert login.status == 200
    # the password change ended the token it was made with; the new login's works
    assert (await world.client.get(f"/v1.0/user/{guest.id}", headers=guest.headers)).status == 401
    headers = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
    for forbidden in ({"role": "admin"}, {"username": "new.name"}, {"is_active": False}):
        response = await world.client.patch(path, json=forbidden, headers=headers)
        assert response.status == 403
        assert (await body_of(response))["success"] is False
    # the same values as now are no change
    same = {"username": guest.username, "role": "user", "is_active": True, "full_name": "Me"}
    assert (await world.client.patch(path, json=same, headers=headers)).status == 200


async def test_admins_cannot_delete_deactivate_or_demote_themselves(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    for method, path, body in [
        ("DELETE", f"/v1.0/user/delete/{admin.id}", None),
        ("POST", f"/v1.0/user/{admin.id}/deactivate", None),
        ("PATCH", f"/v1.0/user/update/{admin.id}", {"is_active": False}),
        ("PATCH", f"/v1.0/user/update/{admin.id}", {"role": "user"}),
    ]:
        response = await world.client.request(method, path, json=body, headers=admin.headers)
        assert response.status == 422, path
        assert (await body_of(response))["success"] is False


async def test_delete_then_404(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    response = await world.client.delete(f"/v1.0/user/delete/{guest.id}", headers=admin.headers)
    assert await body_of(response) == {
        "success": True,
        "message": "User deleted",
        "user_id": guest.id,
    }
    for method, path in [
        ("GET", f"/v1.0/user/{guest.id}"),
        ("DELETE", f"/v1.0/user/delete/{guest.id}"),
        ("PATCH", f"/v1.0/user/update/{guest.id}"),
        ("POST", f"/v1.0/user/{guest.id}/activate"),
        ("POST", f"/v1.0/user/{guest.id}/deactivate"),
    ]:
        response = await world.client.request(
            method, path, json={"full_name": "x"}, headers=admin.headers
        )
        assert response.status == 404, path
        assert await body_of(response) == {"success": False, "error": "User not found"}


@pytest.mark.parametrize(
    "bad_id", ["123", "12345678901", "abcdefghij", "12345678*9", "%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A"]
)
async def test_a_malformed_path_id_is_a_400(world: World, bad_id: str) -> None:
    admin = await world.make_user(Role.ADMIN)
    for method, path in [
        ("GET", f"/v1.0/user/{bad_id}"),
        ("DELETE", f"/v1.0/user/delete/{bad_id}"),
        ("PUT", f"/v1.0/user/update/{bad_id}"),
        ("POST", f"/v1.0/user/{bad_id}/activate"),
        ("POST", f"/v1.0/points/{bad_id}/redeem"),
        ("GET", f"/v1.0/points/{bad_id}/history"),
        ("GET", f"/v1.0/permissions/{bad_id}"),
        ("POST", f"/v1.0/permissions/{bad_id}/grant"),
    ]:
        response = await world.client.request(method, path, json={}, headers=admin.headers)
        assert response.status == 400, path
        body = await body_of(response)
        assert body["details"] == {"user_id": ["Must be a 10-digit user id."]}


async def test_a_malformed_path_id_without_a_token_is_still_a_401(world: World) -> None:
    response = await world.client.get("/v1.0/user/abc")
    assert response.status == 401


async def test_activate_and_deactivate(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    response = await world.client.post(f"/v1.0/user/{guest.id}/deactivate", headers=admin.headers)
    assert (await body_of(response))["user"]["is_active"] is False
    login = {"username": guest.username, "password": PASSWORD}
    assert (await world.client.post("/v1.0/auth/login", json=login)).status == 403
    response = await world.client.post(f"/v1.0/user/{guest.id}/activate", headers=admin.headers)
    assert (await body_of(response))["user"]["is_active"] is True
    assert (await world.client.post("/v1.0/auth/login", json=login)).status == 200


async def list_page(world: World, headers: dict[str, str], query: str) -> dict[str, Any]:
    response = await world.client.get(f"/v1.0/user/list{query}", headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await body_of(response)
    return body


async def test_list_filters_search_and_pages_in_a_stable_order(world: World) -> None:
    admin = await world.make_user(Role.ADMIN, username="front.desk")
    await world.make_user(Role.SUPERADMIN, username="the.boss")
    for n in range(5):
        await world.make_user(username=f"guest.{n}", full_name=f"Guest {n}")
    await world.make_user(username="sleepy", is_active=False, full_name="100% Asleep")

    everyone = await list_page(world, admin.headers, "")
    assert everyone["pagination"] == {"page": 1, "page_size": 20, "total": 7, "pages": 1}
    names = [u["username"] for u in everyone["users"]]
    assert "the.boss" not in names  # superadmins are on /superadmin/users
    assert names[0] == "sleepy"  # newest first
    assert set(everyone["users"][0]) == {
        "id", "username", "email", "full_name", "role", "is_active", "points",
        "created_at", "updated_at",
    }  # fmt: skip

    pages = [await list_page(world, admin.headers, f"?page={p}&page_size=3") for p in (1, 2, 3)]
    paged = [u["username"] for page in pages for u in page["users"]]
    assert paged == names
    assert pages[0]["pagination"] == {"page": 1, "page_size": 3, "total": 7, "pages": 3}

    admins = await list_page(world, admin.headers, "?role=admin")
    assert [u["username"] for u in admins["users"]] == ["front.desk"]
    inactive = await list_page(world, admin.headers, "?is_active=false")
    assert [u["username"] for u in inactive["users"]] == ["sleepy"]
    found = await list_page(world, admin.headers, "?search=GUEST.")
    assert len(found["users"]) == 5
    literal = await list_page(world, admin.headers, "?search=100%25")
    assert [u["username"] for u in literal["users"]] == ["sleepy"]
    wildcard = await list_page(world, admin.headers, "?search=_")
    assert wildcard["pagination"]["total"] == 0
    beyond = await list_page(world, admin.headers, "?page=9")
    assert beyond["users"] == []
    assert beyond["pagination"]["total"] == 7


@pytest.mark.parametrize(
    "query", ["?page=0", "?page_size=101", "?page=500&page_size=100", "?role=boss", "?x=1",
              "?page=1&page=2", "?is_active=maybe"]
)  # fmt: skip
async def test_bad_list_queries_are_a_400(world: World, query: str) -> None:
    admin = await world.make_user(Role.ADMIN)
    response = await world.client.get(f"/v1.0/user/list{query}", headers=admin.headers)
    assert response.status == 400
    assert (await body_of(response))["details"]


async def test_the_superadmin_list_has_everyone(world: World) -> None:
    boss = await world.make_user(Role.SUPERADMIN)
    await world.make_user(Role.ADMIN)
    await world.make_user()
    response = await world.client.get("/v1.0/superadmin/users?page_size=2", headers=boss.headers)
    body = await body_of(response)
    assert body["pagination"] == {"page": 1, "page_size": 2, "total": 3, "pages": 2}
    response = await world.client.get(
        "/v1.0/superadmin/users?page=2&page_size=2", headers=boss.headers
    )
    assert [u["role"] for u in (await body_of(response))["users"]] == ["superadmin"]
    response = await world.client.get("/v1.0/superadmin/users?role=user", headers=boss.headers)
    assert response.status == 400


async def test_get_user_shows_permissions_and_last_login(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    await world.client.post(
        f"/v1.0/permissions/{guest.id}/grant",
        json={"permission": "rooms.read"},
        headers=admin.headers,
    )
    await world.client.post(
        "/v1.0/auth/login", json={"username": guest.username, "password": PASSWORD}
    )
    response = await world.client.get(f"/v1.0/user/{guest.id}", headers=guest.headers)
    user = (await body_of(response))["user"]
    assert user["permissions"] == ["rooms.read"]
    assert user["last_login_at"].endswith("Z")


async def test_text_postgresql_cannot_store_is_a_400_not_a_500(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    for method, path, body, field in [
        ("GET", "/v1.0/user/list?search=a%00b", None, "search"),
        ("POST", "/v1.0/auth/login", {"username": "a\u0000b", "password": "x"}, "username"),
        ("PATCH", f"/v1.0/user/update/{admin.id}", {"full_name": "a\u0000b"}, "full_name"),
        ("POST", f"/v1.0/points/{admin.id}/add", {"amount": 1, "reason": "a\u0000"}, "reason"),
    ]:
        response = await world.client.request(method, path, json=body, headers=admin.headers)
        assert response.status == 400, path
        assert (await body_of(response))["details"] == {field: ["May not contain NUL characters."]}
