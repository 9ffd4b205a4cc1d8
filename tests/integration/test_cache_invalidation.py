"""Through the HTTP API: every mutating route shows its new data at once, and
invalidates exactly what it should; a 4xx invalidates nothing. Every test runs
on a single Redis, a Redis Cluster and a Sentinel-managed master."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from hita.appkeys import CACHE_KEYS
from hita.cache import topology
from hita.cache.connection import RedisClient
from hita.config import Config
from hita.constants import NAMESPACES
from hita.domain.roles import Role
from tests.conftest import RedisTarget
from tests.integration.conftest import (
    PASSWORD,
    Account,
    World,
    body_of,
    notifications_settled,
)

ALL = frozenset(NAMESPACES)
NONE: frozenset[str] = frozenset()


@dataclass
class Scene:
    world: World
    redis: RedisClient
    superadmin: Account
    guest: Account  # the user each mutation targets
    other: Account  # a user no mutation touches

    async def get(self, path: str, caller: Account | None = None) -> Any:
        response = await self.world.client.get(path, headers=(caller or self.superadmin).headers)
        return await body_of(response)

    async def warm(self) -> None:
        """Fill every cache family the mutations may touch, once the changes
        made so far have come round through PostgreSQL (or they could
        invalidate again after the fill)."""
        await notifications_settled(self.world)
        for path in (
            "/v1.0/user/list",
            "/v1.0/user/stats",
            "/v1.0/dashboard/stats",
            "/v1.0/superadmin/users",
            f"/v1.0/user/{self.guest.id}",
            f"/v1.0/user/{self.other.id}",
        ):
            await self.get(path)

    async def generations(self) -> dict[str, bytes | str | None]:
        keys = self.world.app[CACHE_KEYS]
        return {ns: await self.redis.get(keys.namespace(ns).generation_key) for ns in NAMESPACES}

    async def details_cached(self, account: Account) -> bool:
        key = self.world.app[CACHE_KEYS].user_details(account.id).redis_key
        return bool(await self.redis.exists(key))


@pytest.fixture
def config(topology_config: Config) -> Config:
    return topology_config


@pytest.fixture
async def scene(world: World, redis_target: RedisTarget) -> AsyncIterator[Scene]:
    redis = redis_target.client()
    superadmin = await world.make_user(Role.SUPERADMIN)
    guest = await world.make_user(full_name="Guest Before")
    other = await world.make_user(full_name="Other Guest")
    built = Scene(world, redis, superadmin, guest, other)
    yield built
    await topology.close(redis)


Check = Callable[[Scene], Awaitable[None]]


async def sees_new_name(s: Scene) -> None:
    assert (await s.get(f"/v1.0/user/{s.guest.id}"))["user"]["full_name"] == "Guest After"
    names = [u["full_name"] for u in (await s.get("/v1.0/user/list"))["users"]]
    assert "Guest After" in names


async def sees_created(s: Scene) -> None:
    names = [u["username"] for u in (await s.get("/v1.0/user/list"))["users"]]
    assert "newcomer" in names
    assert (await s.get("/v1.0/user/stats"))["stats"]["total_users"] == 4
    assert (await s.get("/v1.0/dashboard/stats"))["stats"]["total_users"] == 4
    assert (await s.get("/v1.0/superadmin/users"))["pagination"]["total"] == 4


async def sees_deleted(s: Scene) -> None:
    response = await s.world.client.get(f"/v1.0/user/{s.guest.id}", headers=s.superadmin.headers)
    assert response.status == 404
    ids = [u["id"] for u in (await s.get("/v1.0/user/list"))["users"]]
    assert s.guest.id not in ids
    assert (await s.get("/v1.0/user/stats"))["stats"]["total_users"] == 2


async def sees_inactive(s: Scene) -> None:
    assert (await s.get(f"/v1.0/user/{s.guest.id}"))["user"]["is_active"] is False
    assert (await s.get("/v1.0/user/stats"))["stats"]["inactive_users"] == 1
    response = await s.world.client.get(f"/v1.0/user/{s.guest.id}", headers=s.guest.headers)
    assert response.status == 401  # the token stopped working at once


async def sees_active(s: Scene) -> None:
    assert (await s.get(f"/v1.0/user/{s.guest.id}"))["user"]["is_active"] is True
    assert (await s.get("/v1.0/user/stats"))["stats"]["inactive_users"] == 0


def sees_points(expected: int) -> Check:
    async def check(s: Scene) -> None:
        assert (await s.get(f"/v1.0/user/{s.guest.id}"))["user"]["points"] == expected
        listed = {u["id"]: u["points"] for u in (await s.get("/v1.0/user/list"))["users"]}
        assert listed[s.guest.id] == expected
        assert (await s.get("/v1.0/user/stats"))["stats"]["total_points"] == expected
        top = (await s.get("/v1.0/dashboard/stats"))["stats"]["top_users"]
        assert {"id": s.guest.id, "points": expected}.items() <= top[0].items()

    return check


def sees_permissions(expected: list[str]) -> Check:
    async def check(s: Scene) -> None:
        assert (await s.get(f"/v1.0/user/{s.guest.id}"))["user"]["permissions"] == expected

    return check


async def sees_login(s: Scene) -> None:
    assert (await s.get(f"/v1.0/user/{s.guest.id}"))["user"]["last_login_at"] is not None


@dataclass(frozen=True)
class Mutation:
    name: str
    method: str
    path: str  # {id} is the guest's id
    body: dict[str, Any] | None
    namespaces: frozenset[str]
    drops_guest_details: bool
    check: str
    prepare: str | None = None  # a mutation to run first (e.g. points to redeem)


async def run_check(scene: Scene, name: str) -> None:
    checks: dict[str, Check] = {
        "name": sees_new_name,
        "created": sees_created,
        "deleted": sees_deleted,
        "inactive": sees_inactive,
        "active": sees_active,
        "points_50": sees_points(50),
        "points_30": sees_points(30),
        "granted": sees_permissions(["rooms.read"]),
        "revoked": sees_permissions([]),
        "login": sees_login,
    }
    await checks[name](scene)


MUTATIONS = [
    Mutation(
        "create",
        "POST",
        "/v1.0/user/create",
        {
            "username": "newcomer",
            "email": "new@hotel.example",
            "full_name": "New Comer",
            "password": PASSWORD,
        },
        ALL,
        False,
        "created",
    ),
    Mutation(
        "put",
        "PUT",
        "/v1.0/user/update/{id}",
        {
            "username": "{username}",
            "email": "{email}",
            "full_name": "Guest After",
            "role": "user",
            "is_active": True,
        },
        ALL,
        True,
        "name",
    ),
    Mutation(
        "patch", "PATCH", "/v1.0/user/update/{id}", {"full_name": "Guest After"}, ALL, True, "name"
    ),
    Mutation("delete", "DELETE", "/v1.0/user/delete/{id}", None, ALL, True, "deleted"),
    Mutation("deactivate", "POST", "/v1.0/user/{id}/deactivate", None, ALL, True, "inactive"),
    Mutation(
        "activate",
        "POST",
        "/v1.0/user/{id}/activate",
        None,
        ALL,
        True,
        "active",
        prepare="deactivate",
    ),
    Mutation(
        "add points",
        "POST",
        "/v1.0/points/{id}/add",
        {"amount": 50, "reason": "stay"},
        ALL,
        True,
        "points_50",
    ),
    Mutation(
        "redeem points",
        "POST",
        "/v1.0/points/{id}/redeem",
        {"amount": 20, "reason": "spa"},
        ALL,
        True,
        "points_30",
        prepare="add points",
    ),
    Mutation(
        "grant",
        "POST",
        "/v1.0/permissions/{id}/grant",
        {"permission": "rooms.read"},
        NONE,
        True,
        "granted",
    ),
    Mutation(
        "revoke",
        "POST",
        "/v1.0/permissions/{id}/revoke",
        {"permission": "rooms.read"},
        NONE,
        True,
        "revoked",
        prepare="grant",
    ),
]
BY_NAME = {m.name: m for m in MUTATIONS}


async def send(scene: Scene, mutation: Mutation) -> int:
    guest = scene.guest
    body = None
    if mutation.body is not None:
        body = {
            k: v.format(username=guest.username, email=guest.email) if isinstance(v, str) else v
            for k, v in mutation.body.items()
        }
    response = await scene.world.client.request(
        mutation.method,
        mutation.path.format(id=guest.id),
        json=body,
        headers=scene.superadmin.headers,
    )
    assert response.status in (200, 201), await response.text()
    return response.status


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
async def test_each_mutating_route_shows_new_data_at_once_and_invalidates_exactly_its_types(
    scene: Scene, mutation: Mutation
) -> None:
    if mutation.prepare:
        await send(scene, BY_NAME[mutation.prepare])
    await scene.warm()
    before = await scene.generations()
    assert all(before.values())
    assert await scene.details_cached(scene.guest)

    await send(scene, mutation)

    after = await scene.generations()
    changed = {ns for ns in NAMESPACES if before[ns] != after[ns]}
    assert changed == mutation.namespaces
    assert await scene.details_cached(scene.guest) is not mutation.drops_guest_details
    assert await scene.details_cached(scene.other)  # user A's change leaves user B's entry
    await run_check(scene, mutation.check)


async def test_login_drops_only_that_users_details(scene: Scene) -> None:
    await scene.warm()
    before = await scene.generations()
    response = await scene.world.client.post(
        "/v1.0/auth/login", json={"username": scene.guest.username, "password": PASSWORD}
    )
    assert response.status == 200
    assert await scene.generations() == before
    assert not await scene.details_cached(scene.guest)
    assert await scene.details_cached(scene.other)
    await sees_login(scene)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PATCH", "/v1.0/user/update/{id}", {"full_name": ""}, 400),
        ("PATCH", "/v1.0/user/update/{id}", {"nickname": "x"}, 400),
        ("POST", "/v1.0/points/{id}/redeem", {"amount": 1_000, "reason": "spa"}, 422),
        ("POST", "/v1.0/points/9999999999/add", {"amount": 5, "reason": "stay"}, 404),
        ("DELETE", "/v1.0/user/delete/9999999999", None, 404),
        ("POST", "/v1.0/user/create", {"username": "x"}, 400),
        ("POST", "/v1.0/auth/login", {"username": "nobody", "password": "wrong"}, 401),
    ],
)
async def test_a_4xx_invalidates_nothing(
    scene: Scene, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    await scene.warm()
    before = await scene.generations()
    stats_before = dict(scene.world.app[CACHE_KEYS].cache.stats.invalidation_causes)
    response = await scene.world.client.request(
        method, path.format(id=scene.guest.id), json=body, headers=scene.superadmin.headers
    )
    assert response.status == status
    assert await scene.generations() == before
    assert await scene.details_cached(scene.guest)
    assert dict(scene.world.app[CACHE_KEYS].cache.stats.invalidation_causes) == stats_before


async def test_a_user_editing_itself_is_seen_by_the_admin_at_once(scene: Scene) -> None:
    await scene.warm()
    response = await scene.world.client.patch(
        f"/v1.0/user/update/{scene.guest.id}",
        json={"full_name": "Guest After"},
        headers=scene.guest.headers,
    )
    assert response.status == 200
    await sees_new_name(scene)


async def test_no_secret_ever_reaches_redis(scene: Scene) -> None:
    """Password hashes and tokens are never cached, whatever was read or written."""
    await scene.world.client.post(
        "/v1.0/auth/login", json={"username": scene.guest.username, "password": PASSWORD}
    )
    await scene.warm()
    await scene.get(f"/v1.0/user/{scene.superadmin.id}", scene.superadmin)
    values = [await scene.redis.get(key) async for key in topology.scan_keys(scene.redis, "*", 100)]
    assert values
    for raw in values:
        assert raw is not None
        for secret in (
            b"argon2",
            b"password_hash",
            PASSWORD.encode(),
            scene.guest.token.encode(),
            scene.superadmin.token.encode(),
        ):
            assert secret not in raw
