"""L1 holds what is served: a warm hit sends the stored body and ETag with
nothing encoded, decoded or hashed, and an invalidation of the entry drops
them with it (the next answer is rendered anew, once)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pytest_aiohttp import AiohttpClient

from hita.api import answers, etag
from hita.api.auth import CALLER
from hita.appkeys import CACHE, CACHE_KEYS
from hita.cache.near import TRACKING_LOST
from hita.domain.roles import Role
from tests.integration.conftest import Account, World
from tests.integration.test_coherence import settled, two_worlds
from tests.integration.test_near_cache import tracking_on

pytestmark = pytest.mark.slow


@pytest.fixture
def encodings(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every orjson encode or decode and every ETag digest made from now on,
    by name (the patched functions still do their work)."""
    seen: Counter[str] = Counter()

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            return original(*args, **kwargs)

        return call

    monkeypatch.setattr(orjson, "dumps", counting("orjson.dumps", orjson.dumps))
    monkeypatch.setattr(orjson, "loads", counting("orjson.loads", orjson.loads))
    monkeypatch.setattr(answers, "etag_of", counting("etag_of", etag.etag_of))
    monkeypatch.setattr(etag, "etag_of", counting("etag_of", etag.etag_of))
    return seen


async def read(world: World, caller: Account, path: str, **headers: str) -> tuple[int, bytes, str]:
    response = await world.client.get(path, headers={**caller.headers, **headers})
    return response.status, await response.read(), response.headers.get("ETag", "")


async def warm_world(aiohttp_client: AiohttpClient, database: str, redis: str) -> World:
    world, _ = await two_worlds(aiohttp_client, database, redis, CACHE_L1_ENABLED="true")
    await tracking_on(world)
    return world


async def test_a_warm_hit_encodes_nothing_and_an_invalidation_renews_the_answer(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str, encodings: Counter[str]
) -> None:
    world = await warm_world(aiohttp_client, clean_database, clean_redis)
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    path = f"/v1.0/user/{guest.id}"
    for _ in range(3):  # fill Redis, then L1 (our own fill's echo drops the first copy)
        await read(world, admin, path)
    await settled(world)
    status, body, tag = await read(world, admin, path)  # the answer is kept with the entry
    assert status == 200
    near = world.app[CACHE].near
    assert near is not None
    key = world.app[CACHE_KEYS].user_details(guest.id).redis_key
    memo = near.memo(key)
    assert memo is not None
    assert memo[answers.USER.name] == answers.Answer(body, tag)
    assert CALLER.name in (near.memo(world.app[CACHE_KEYS].user_details(admin.id).redis_key) or {})

    encodings.clear()
    for _ in range(5):
        assert await read(world, admin, path) == (200, body, tag)
    assert await read(world, admin, path, **{"If-None-Match": tag}) == (304, b"", tag)
    assert encodings == Counter()  # the token check, the read, the tag: all lookups

    # A write invalidates the entry: its stored answer goes with it.
    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "Renamed Guest"}, headers=admin.headers
    )
    assert response.status == 200
    assert near.memo(key) is None or answers.USER.name not in (near.memo(key) or {})
    status, renewed, new_tag = await read(world, admin, path)
    assert status == 200
    assert (renewed, new_tag) != (body, tag)
    assert orjson.loads(renewed)["user"]["full_name"] == "Renamed Guest"
    assert new_tag == etag.etag_of(renewed)
    assert (await read(world, admin, path, **{"If-None-Match": tag}))[0] == 200


async def test_control_a_cold_read_is_counted(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str, encodings: Counter[str]
) -> None:
    """The counter sees the work when there is some: with L1 emptied, the same
    read decodes the entries and renders the answer."""
    world = await warm_world(aiohttp_client, clean_database, clean_redis)
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    path = f"/v1.0/user/{guest.id}"
    for _ in range(3):
        await read(world, admin, path)
    await settled(world)
    near = world.app[CACHE].near
    assert near is not None
    near.flush(TRACKING_LOST)
    encodings.clear()
    assert (await read(world, admin, path))[0] == 200
    assert encodings["orjson.loads"] >= 2  # the caller's entry and the user's
    assert encodings["orjson.dumps"] == 1
    assert encodings["etag_of"] == 1


@pytest.mark.parametrize(
    "path", ["/v1.0/user/list?page=1", "/v1.0/user/stats", "/v1.0/dashboard/stats"]
)
async def test_every_cached_read_serves_its_stored_answer(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    clean_redis: str,
    encodings: Counter[str],
    path: str,
) -> None:
    world = await warm_world(aiohttp_client, clean_database, clean_redis)
    admin = await world.make_user(Role.ADMIN)
    for _ in range(3):
        await read(world, admin, path)
    await settled(world)
    first = await read(world, admin, path)
    encodings.clear()
    assert await read(world, admin, path) == first
    assert encodings == Counter()
