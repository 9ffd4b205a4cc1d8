"""Read-your-writes: once a write has returned, no read returns the old data,
from this instance or another one; not in the stale-set race, not across a
Redis pause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from hita.app import create_app
from hita.appkeys import CACHE, CACHE_KEYS, REFRESHER
from hita.cache.breaker import BreakerState
from hita.cache.client import RedisCache
from hita.cache.pending import PendingInvalidations
from hita.config import Config
from hita.domain.roles import Role
from hita.domain.users import UserListQuery
from hita.embedded import EmbeddedRedis
from hita.services.tokens import Tokens
from hita.services.users import UserService
from tests.conftest import RedisTarget, make_config
from tests.integration.conftest import (
    Account,
    World,
    body_of,
    notifications_settled,
    silence_outbox,
)


@pytest.fixture
def config(topology_config: Config) -> Config:
    """The tests over the app run on a single Redis, a Cluster and Sentinel."""
    return topology_config


class Gate:
    """Holds a loader after it has read PostgreSQL, until the test lets it go."""

    def __init__(self) -> None:
        self.read_old = asyncio.Event()
        self.go_on = asyncio.Event()

    async def hold(self) -> None:
        if not self.go_on.is_set():
            self.read_old.set()
            await self.go_on.wait()


def hold_reads_of(
    monkeypatch: pytest.MonkeyPatch, name: str, gate: Gate, when: Callable[..., bool]
) -> None:
    """Wrap ``UserService.<name>`` (what the cache calls on a miss) with the gate."""
    original = getattr(UserService, name)

    async def held(self: UserService, *args: Any) -> Any:
        row = await original(self, *args)
        if when(*args):
            await gate.hold()
        return row

    monkeypatch.setattr(UserService, name, held)


def ignore_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache without the lease check: stores whatever a reader loaded (the bug)."""
    original = RedisCache._fill

    async def fill_anyway(self: RedisCache, key: Any, data_key: str, **kwargs: Any) -> bool:
        return await original(
            self, key, data_key, **{**kwargs, "expected": "*", "allow_absent": True}
        )

    monkeypatch.setattr(RedisCache, "_fill", fill_anyway)


async def full_name(world: World, caller: Account, user_id: str) -> str:
    response = await world.client.get(f"/v1.0/user/{user_id}", headers=caller.headers)
    name: str = (await body_of(response))["user"]["full_name"]
    return name


async def stale_set_race(world: World, monkeypatch: pytest.MonkeyPatch) -> str:
    """Reader misses and reads the old row; the write commits and invalidates;
    then the reader stores. Returns what the next read says."""
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user(full_name="Old Name")
    await full_name(world, admin, admin.id)  # the admin's own token check is cached now
    gate = Gate()
    hold_reads_of(monkeypatch, "get_user", gate, lambda user_id: user_id == guest.id)

    reader = asyncio.create_task(full_name(world, admin, guest.id))
    await gate.read_old.wait()  # the reader has the old row in hand
    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "New Name"}, headers=admin.headers
    )
    assert response.status == 200  # the write has returned
    gate.go_on.set()
    assert await reader == "Old Name"  # that read began before the write: allowed
    return await full_name(world, admin, guest.id)


async def test_a_stale_read_cannot_be_stored_after_the_write(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await stale_set_race(world, monkeypatch) == "New Name"


async def test_the_race_is_real_without_the_lease_check(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: without the lease check (and without the outbox's notification,
    which would invalidate the entry again a moment later) the old row is stored."""
    ignore_leases(monkeypatch)
    silence_outbox(world)
    assert await stale_set_race(world, monkeypatch) == "Old Name"


async def test_a_stale_list_page_lands_in_a_dead_generation(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user(full_name="Old Name")
    gate = Gate()
    hold_reads_of(monkeypatch, "list_users", gate, lambda query: query == UserListQuery())

    async def names() -> list[str]:
        response = await world.client.get("/v1.0/user/list", headers=admin.headers)
        return [u["full_name"] for u in (await body_of(response))["users"]]

    reader = asyncio.create_task(names())
    await gate.read_old.wait()
    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "New Name"}, headers=admin.headers
    )
    assert response.status == 200
    gate.go_on.set()
    assert "Old Name" in await reader
    assert "New Name" in await names()


# -- Redis paused (SIGSTOP) while a user is updated -------------------------------


@pytest.fixture
async def paused_world(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> AsyncIterator[World]:
    config = make_config(
        DATABASE_URL=clean_database,
        REDIS_URL=own_redis.url,
        CACHE_BREAKER_FAILURES="1",
        CACHE_BREAKER_OPEN_S="0.3",
    )
    app = create_app(config)
    yield World(await aiohttp_client(app), app, config, Tokens(config.auth))
    own_redis.process.resume()


async def paused_update(world: World, redis_server: EmbeddedRedis) -> str:
    """Old entry in Redis's memory; Redis paused; the user is updated; Redis
    resumed. Returns what the next read says."""
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user(full_name="Old Name")
    assert await full_name(world, admin, guest.id) == "Old Name"  # cached now
    key = world.app[CACHE_KEYS].user_details(guest.id).redis_key

    raw = Redis.from_url(redis_server.url)
    try:
        # What Redis holds when it is paused, and will hold when it resumes until
        # this instance's applier (which retries as soon as Redis answers) removes it.
        assert b"Old Name" in (await raw.get(key) or b"")
    finally:
        await raw.aclose()
    redis_server.process.pause()
    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "New Name"}, headers=admin.headers
    )
    assert response.status == 200  # served from PostgreSQL while Redis is away
    redis_server.process.resume()
    # Until the breaker lets calls through again: after the cool-down, a read of
    # another key is the half-open probe. On a loaded machine that probe may time
    # out and reopen the breaker, and the next read would then come from
    # PostgreSQL whatever Redis holds, which proves nothing either way.
    cache = world.app[CACHE]
    probe = world.app[CACHE_KEYS].user_details("1000000000")
    for _ in range(50):
        await asyncio.sleep(world.config.cache.breaker.open_s)  # the breaker's cool-down
        await cache.get(probe)
        if cache.breaker.state is BreakerState.CLOSED:
            break
    assert cache.breaker.state is BreakerState.CLOSED
    return await full_name(world, admin, guest.id)


@pytest.mark.slow
async def test_an_update_while_redis_is_paused_is_never_hidden_by_the_old_entry(
    paused_world: World, own_redis: EmbeddedRedis
) -> None:
    assert await paused_update(paused_world, own_redis) == "New Name"
    # The deferred invalidations are applied by the cache's own retry task. On a
    # loaded machine the first probe after the resume may still time out (a 250 ms
    # command timeout), so wait for the outcome instead of asserting it at once.
    cache = paused_world.app[CACHE]
    for _ in range(100):
        if not cache.pending:
            break
        await asyncio.sleep(0.1)
    assert not cache.pending


@pytest.mark.slow
async def test_the_seed_would_serve_the_old_entry(
    paused_world: World, own_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: forget invalidations that failed, as the seed does, and the old name is back."""
    forget_failed_invalidations(monkeypatch, paused_world)
    assert await paused_update(paused_world, own_redis) == "Old Name"


def forget_failed_invalidations(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    """No suspects, no retries, no outbox: what the seed does with a failed invalidation."""
    monkeypatch.setattr(PendingInvalidations, "covers", lambda self, key: False)
    monkeypatch.setattr(RedisCache, "_kick_applier", lambda self: None)
    silence_outbox(world)


# -- two instances on one PostgreSQL and one Redis --------------------------------


async def two_apps(
    aiohttp_client: AiohttpClient,
    config_overrides: dict[str, str],
    database_url: str,
    redis: RedisTarget,
) -> tuple[World, World]:
    config = make_config(DATABASE_URL=database_url, **redis.env, **config_overrides)
    worlds = []
    for _ in range(2):
        app = create_app(config)
        worlds.append(World(await aiohttp_client(app), app, config, Tokens(config.auth)))
    return worlds[0], worlds[1]


async def test_a_write_through_one_instance_is_read_at_once_through_the_other(
    aiohttp_client: AiohttpClient, clean_database: str, redis_target: RedisTarget
) -> None:
    first, second = await two_apps(aiohttp_client, {}, clean_database, redis_target)
    admin = await first.make_user(Role.ADMIN)
    guest = await first.make_user(full_name="Old Name")

    async def read_all(world: World) -> tuple[str, int, int]:
        name = await full_name(world, admin, guest.id)
        stats = await body_of(await world.client.get("/v1.0/user/stats", headers=admin.headers))
        dashboard = await body_of(
            await world.client.get("/v1.0/dashboard/stats", headers=admin.headers)
        )
        return (
            name,
            stats["stats"]["total_points"],
            dashboard["stats"]["points_issued_last_30_days"],
        )

    assert await read_all(second) == ("Old Name", 0, 0)  # cached in the second instance
    await first.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "New Name"}, headers=admin.headers
    )
    await first.client.post(
        f"/v1.0/points/{guest.id}/add", json={"amount": 40, "reason": "stay"}, headers=admin.headers
    )
    assert await read_all(second) == ("New Name", 40, 40)


@pytest.mark.slow
async def test_the_scheduled_refresh_runs_once_per_interval_across_instances(
    aiohttp_client: AiohttpClient, clean_database: str, redis_target: RedisTarget
) -> None:
    interval = 0.25
    first, second = await two_apps(
        aiohttp_client,
        {"STATS_REFRESH_ENABLED": "true", "STATS_REFRESH_INTERVAL_S": str(interval)},
        clean_database,
        redis_target,
    )
    # Made first: a new user changes the statistics, so it invalidates them (and
    # once more when its notification and the outbox sweep come round: settled here,
    # or that bump could land after the last refresh and make the read below miss).
    admin = await first.make_user(Role.ADMIN)
    await notifications_settled(first)
    refreshers = [first.app[REFRESHER], second.app[REFRESHER]]
    # Until five intervals had their refresh: about 8 x 0.25 s on an idle machine; a
    # loaded one may take longer (and skip an interval), which is not what is tested.
    for _ in range(600):
        if sum(len(r.counters.slots) for r in refreshers) >= 5:
            break
        await asyncio.sleep(interval / 5)
    every = sorted(refreshers[0].counters.slots + refreshers[1].counters.slots)
    assert len(every) >= 5
    assert len(every) == len(set(every))  # never two refreshes in one interval
    assert every[-1] - every[0] < 2 * len(every)  # ... and one in most intervals
    runs = [r.counters.runs for r in refreshers]
    skipped = [r.counters.skipped for r in refreshers]
    assert sum(runs) == len(every)
    assert sum(skipped) >= 1  # the other instance woke in a claimed interval and stood aside
    stats = first.app[CACHE].stats["dashboard_stats"]
    misses = stats.misses
    await first.client.get("/v1.0/dashboard/stats", headers=admin.headers)
    assert stats.misses == misses  # the refresh had already filled it
