"""The fast lane of the cached reads (``Route.held``, ``_RouteFront.held_answer``):
with a token verified before and everything held in L1, the answer is made
with no coroutine of the route, and it is the answer the route's handler
gives, byte for byte, for every caller, target and ``If-None-Match``."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from hita.api.auth import Authenticator
from hita.api.front import _RouteFront
from hita.domain.roles import Role
from hita.services.cached_users import CachedUserService
from tests.integration.conftest import Account, World
from tests.integration.test_coherence import settled
from tests.integration.test_stored_answers import read, warm_world

pytestmark = pytest.mark.slow

WAITING_WAYS = ("user_view", "list_view", "superadmin_list_view", "dashboard_stats_view")


def _paths(*ids: str) -> list[str]:
    return [
        *(f"/v1.0/user/{i}" for i in ids),
        "/v1.0/user/list?page=1",
        "/v1.0/user/list?page=1&role=user",
        "/v1.0/user/stats",
        "/v1.0/dashboard/stats",
        "/v1.0/superadmin/users?page=1",
    ]


async def _warm(world: World, callers: list[Account], paths: list[str]) -> None:
    for _ in range(3):  # fill Redis, then L1, then the answer kept beside the entry
        for caller, path in itertools.product(callers, paths):
            await read(world, caller, path)
        await settled(world)


async def warm_reads_without_waiting(
    aiohttp_client: AiohttpClient, database: str, redis: str, monkeypatch: pytest.MonkeyPatch
) -> list[int]:
    """The status of warm reads (the user, the lists, the statistics) made
    once the routes' coroutines and the token check that waits are refused."""
    world = await warm_world(aiohttp_client, database, redis)
    superadmin = await world.make_user(Role.SUPERADMIN)
    guest = await world.make_user()
    paths = _paths(guest.id)
    await _warm(world, [superadmin], paths)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the route's coroutine ran")

    for name in WAITING_WAYS:
        monkeypatch.setattr(CachedUserService, name, refuse)
    monkeypatch.setattr(Authenticator, "authorize", refuse)
    return [(await read(world, superadmin, path))[0] for path in paths]


@pytest.mark.parametrize(
    ("fast_lane", "status"),
    [(True, 200), (False, 500)],
    ids=["with the fast lane", "control: without it, the route's way runs"],
)
async def test_a_warm_read_is_answered_with_no_coroutine_of_the_route(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    clean_redis: str,
    *,
    monkeypatch: pytest.MonkeyPatch,
    fast_lane: bool,
    status: int,
) -> None:
    if not fast_lane:
        monkeypatch.setattr(_RouteFront, "held_answer", lambda self, request: None)
    statuses = await warm_reads_without_waiting(
        aiohttp_client, clean_database, clean_redis, monkeypatch
    )
    assert statuses == [status] * len(statuses)


async def test_the_fast_lane_answers_as_the_route_does(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    clean_redis: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every caller (each role, and a token whose user was then deactivated) on
    every cached route and target (itself, another user, an unknown id, a
    malformed one), with and without ``If-None-Match``: the same status, body
    and tag with the fast lane as without it; and the fast lane answered."""
    world = await warm_world(aiohttp_client, clean_database, clean_redis)
    callers = [
        await world.make_user(Role.SUPERADMIN),
        await world.make_user(Role.ADMIN),
        await world.make_user(),
        await world.make_user(),
    ]
    gone = callers[3]
    paths = _paths(callers[1].id, callers[2].id, "5779356081", "not-an-id")
    await _warm(world, callers, paths)
    admin = callers[0]
    response = await world.client.post(f"/v1.0/user/{gone.id}/deactivate", headers=admin.headers)
    assert response.status == 200
    await _warm(world, callers, paths)

    answered = []
    original = _RouteFront.held_answer

    def counting(self: _RouteFront, request: Any) -> Any:
        found = original(self, request)
        answered.append(found is not None)
        return found

    async def answers() -> list[tuple[int, bytes, str]]:
        found = []
        for caller, path in itertools.product(callers, paths):
            status, body, tag = await read(world, caller, path)
            found.append((status, body, tag))
            for match in (tag or '"0"', "*", "not a tag"):
                found.append(await read(world, caller, path, **{"If-None-Match": match}))
        return found

    monkeypatch.setattr(_RouteFront, "held_answer", counting)
    fast = await answers()
    monkeypatch.setattr(_RouteFront, "held_answer", lambda self, request: None)
    slow = await answers()
    assert fast == slow
    statuses = {status for status, _, _ in fast}
    assert {200, 304, 400, 401, 403, 404} <= statuses
    assert sum(answered) >= len(answered) // 2  # the warm ones, at least
