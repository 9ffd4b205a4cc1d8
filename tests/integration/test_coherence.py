"""No read older than an acknowledged write, on any instance, whatever Redis does.

Two instances (A writes, B reads) on one PostgreSQL and one Redis, one path of
the protocol (docs/cache.md) per test, each with a control that removes the
mechanism and shows the stale read coming back.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.app import create_app
from hita.appkeys import CACHE, CACHE_KEYS, COHERENCE
from hita.cache.breaker import BreakerState
from hita.cache.client import RedisCache
from hita.domain.roles import Role
from hita.embedded import EmbeddedRedis
from hita.services.coherence import CacheCoherence
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.helpers import state_of
from tests.integration.conftest import Account, World, body_of, deafen, silence_outbox

pytestmark = pytest.mark.slow

SEEN_WITHIN_S = 1.0


async def two_worlds(
    aiohttp_client: AiohttpClient, database_url: str, redis_url: str, **overrides: str
) -> tuple[World, World]:
    config = make_config(DATABASE_URL=database_url, REDIS_URL=redis_url, **overrides)
    worlds = []
    for _ in range(2):
        app = create_app(config)
        worlds.append(World(await aiohttp_client(app), app, config, Tokens(config.auth)))
    return worlds[0], worlds[1]


@pytest.fixture
async def worlds(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> tuple[World, World]:
    return await two_worlds(aiohttp_client, clean_database, clean_redis)


@pytest.fixture
async def worlds_on_own_redis(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> AsyncIterator[tuple[World, World]]:
    yield await two_worlds(
        aiohttp_client,
        clean_database,
        own_redis.url,
        CACHE_BREAKER_FAILURES="1",
        CACHE_BREAKER_OPEN_S="0.2",
        CACHE_INVALIDATION_BUDGET_MS="300",
    )
    own_redis.process.resume()


async def details(world: World, caller: Account, user_id: str) -> dict[str, Any]:
    response = await world.client.get(f"/v1.0/user/{user_id}", headers=caller.headers)
    assert response.status == 200
    user: dict[str, Any] = (await body_of(response))["user"]
    return user


async def rename(world: World, admin: Account, user_id: str, name: str) -> None:
    response = await world.client.patch(
        f"/v1.0/user/update/{user_id}", json={"full_name": name}, headers=admin.headers
    )
    assert response.status == 200


async def cached_guest(a: World, b: World) -> tuple[Account, Account]:
    """An admin, and a guest whose details B holds in Redis (and A too)."""
    admin = await a.make_user(Role.ADMIN)
    guest = await a.make_user(full_name="Old Name")
    for world in (a, b):
        assert (await details(world, admin, guest.id))["full_name"] == "Old Name"
    await settled(a, b)
    return admin, guest


async def settled(*worlds: World) -> None:
    """Wait until no instance holds anything suspect (its notifications applied)."""
    deadline = time.monotonic() + 5
    while any(w.app[CACHE].pending for w in worlds):
        assert time.monotonic() < deadline, "pending invalidations never applied"
        await asyncio.sleep(0.01)


def invalidations_respect_the_breaker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: an open breaker skips invalidations again (the old behaviour)."""
    original = RedisCache._call

    async def call(self: RedisCache, *args: Any, force: bool = False) -> Any:
        return await original(self, *args, force=False)

    monkeypatch.setattr(RedisCache, "_call", call)


def open_breaker(world: World) -> None:
    breaker = world.app[CACHE].breaker
    breaker.open_s = 60.0
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN


# -- the writer's breaker is open, the reader's closed ----------------------------


async def breaker_open_on_the_writer(a: World, b: World) -> str:
    admin, guest = await cached_guest(a, b)
    open_breaker(a)
    await rename(a, admin, guest.id, "New Name")
    return str((await details(b, admin, guest.id))["full_name"])


async def test_the_writers_open_breaker_does_not_skip_its_invalidation(
    worlds: tuple[World, World],
) -> None:
    a, b = worlds
    deafen(b)  # so that this test shows the writer's own invalidation at work
    assert await breaker_open_on_the_writer(a, b) == "New Name"


async def test_control_an_open_breaker_that_skips_invalidations_serves_the_old_name(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = worlds
    invalidations_respect_the_breaker(monkeypatch)
    deafen(b)
    assert await breaker_open_on_the_writer(a, b) == "Old Name"


async def test_a_reader_told_by_postgres_needs_no_help_from_the_writer(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with the writer's invalidation skipped, B heard of the change."""
    a, b = worlds
    invalidations_respect_the_breaker(monkeypatch)
    assert await breaker_open_on_the_writer(a, b) == "New Name"


# -- the writer's invalidation times out, the reader's read succeeds --------------


def time_out_invalidations(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    cache = world.app[CACHE]

    async def timing_out(invalidation: Any) -> None:
        raise RedisTimeoutError("Timeout reading from socket")

    monkeypatch.setattr(cache, "_apply", timing_out)


async def test_an_invalidation_that_times_out_is_delivered_through_postgres(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    time_out_invalidations(monkeypatch, a)
    started = time.monotonic()
    await rename(a, admin, guest.id, "New Name")
    assert time.monotonic() - started >= a.config.cache.invalidation_budget_s / 2  # it tried
    assert (await details(b, admin, guest.id))["full_name"] == "New Name"
    assert (await details(a, admin, guest.id))["full_name"] == "New Name"


async def test_control_without_the_notification_the_reader_serves_the_old_name(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    time_out_invalidations(monkeypatch, a)
    deafen(b)
    await rename(a, admin, guest.id, "New Name")
    assert (await details(b, admin, guest.id))["full_name"] == "Old Name"


async def test_a_deactivated_users_token_is_refused_by_the_other_instance_at_once(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    assert (await b.client.get(f"/v1.0/user/{guest.id}", headers=guest.headers)).status == 200
    time_out_invalidations(monkeypatch, a)
    response = await a.client.post(f"/v1.0/user/{guest.id}/deactivate", headers=admin.headers)
    assert response.status == 200
    refused = await b.client.get(f"/v1.0/user/{guest.id}", headers=guest.headers)
    assert refused.status == 401


# -- a change made outside the service (plain SQL) ---------------------------------


async def rename_by_sql(database_url: str, user_id: str, name: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE users SET full_name = $2 WHERE id = $1", user_id, name)
    finally:
        await conn.close()


async def seen_by(world: World, admin: Account, user_id: str, name: str) -> float:
    """Seconds until ``world`` shows ``name``; inf if not within SEEN_WITHIN_S."""
    started = time.monotonic()
    while time.monotonic() - started < SEEN_WITHIN_S:
        if (await details(world, admin, user_id))["full_name"] == name:
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    return float("inf")


async def test_a_change_by_plain_sql_is_seen_by_both_instances_within_a_second(
    worlds: tuple[World, World], clean_database: str
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    await rename_by_sql(clean_database, guest.id, "Renamed In psql")
    assert await seen_by(a, admin, guest.id, "Renamed In psql") < SEEN_WITHIN_S
    assert await seen_by(b, admin, guest.id, "Renamed In psql") < SEEN_WITHIN_S


async def test_control_without_the_channel_a_sql_change_stays_hidden(
    worlds: tuple[World, World], clean_database: str
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    for world in (a, b):
        silence_outbox(world)
    await rename_by_sql(clean_database, guest.id, "Renamed In psql")
    assert await seen_by(b, admin, guest.id, "Renamed In psql") == float("inf")


# -- the channel drops; the reader is blind, then catches up ----------------------


async def drop_channel(world: World, database_url: str) -> None:
    """Terminate the instance's LISTEN connection from the server side."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    coherence = world.app[COHERENCE]
    deadline = time.monotonic() + 5
    while coherence.listener.listening:
        assert time.monotonic() < deadline, "the instance never noticed"
        await asyncio.sleep(0.01)


async def test_a_dropped_channel_blinds_the_reader_until_the_backlog_is_read(
    worlds: tuple[World, World], clean_database: str, clean_redis: str
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    coherence = b.app[COHERENCE]
    reconnects = coherence.listener.connections
    await drop_channel(b, clean_database)
    assert b.app[CACHE].pending.blind
    # While B is deaf, a change made by hand (no Redis invalidation at all).
    await rename_by_sql(clean_database, guest.id, "Changed While Deaf")
    assert (await details(b, admin, guest.id))["full_name"] == "Changed While Deaf"
    await asyncio.wait_for(coherence.ready.wait(), 10)
    assert coherence.listener.connections == reconnects + 1
    assert not b.app[CACHE].pending.blind
    # ... and the cache holds and serves it again (once the sweep, too, has applied the row).
    key = b.app[CACHE_KEYS].user_details(guest.id).redis_key
    raw = Redis.from_url(clean_redis)
    try:
        deadline = time.monotonic() + 5
        while b"Changed While Deaf" not in (await raw.get(key) or b""):
            assert time.monotonic() < deadline, "the cache never served again"
            assert (await details(b, admin, guest.id))["full_name"] == "Changed While Deaf"
            await asyncio.sleep(0.05)
    finally:
        await raw.aclose()


async def test_control_a_reader_that_ignores_the_drop_serves_the_old_name(
    worlds: tuple[World, World], clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    monkeypatch.setattr(CacheCoherence, "_deaf", lambda self: None)
    monkeypatch.setattr(b.app[COHERENCE].listener, "_on_deaf", lambda: None)
    await drop_channel(b, clean_database)
    await rename_by_sql(clean_database, guest.id, "Changed While Deaf")
    assert (await details(b, admin, guest.id))["full_name"] == "Old Name"


async def test_the_sweep_applies_and_prunes_the_outbox(
    worlds: tuple[World, World], clean_database: str
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    await rename(a, admin, guest.id, "New Name")
    deadline = time.monotonic() + 10
    while await a.app[COHERENCE].outbox.count():
        assert time.monotonic() < deadline, "the outbox was never swept"
        await asyncio.sleep(0.05)
    assert a.app[COHERENCE].swept + b.app[COHERENCE].swept >= 1


# -- Redis paused; the writer dies right after its commit -------------------------

WRITER = """
import asyncio, os, signal, sys
import asyncpg

async def main() -> None:
    conn = await asyncpg.connect(sys.argv[1])
    await conn.execute("UPDATE users SET full_name = $2 WHERE id = $1", sys.argv[2], sys.argv[3])
    os.kill(os.getpid(), signal.SIGKILL)  # committed; it never reaches Redis

asyncio.run(main())
"""


def writer_killed_after_commit(database_url: str, user_id: str, name: str) -> int:
    done = subprocess.run(  # a short child, killed by itself
        [sys.executable, "-c", WRITER, database_url, user_id, name], check=False, timeout=30
    )
    return done.returncode


async def killed_writer_during_pause(
    a: World, b: World, own_redis: EmbeddedRedis, database_url: str
) -> list[str]:
    admin, guest = await cached_guest(a, b)
    key = b.app[CACHE_KEYS].user_details(guest.id).redis_key
    own_redis.process.pause()
    code = await asyncio.to_thread(
        writer_killed_after_commit, database_url, guest.id, "Written Then Killed"
    )
    assert code == -signal.SIGKILL
    seen = [str((await details(b, admin, guest.id))["full_name"])]  # Redis paused
    own_redis.process.resume()
    for _ in range(30):
        seen.append(str((await details(b, admin, guest.id))["full_name"]))
        await asyncio.sleep(0.02)
    raw = Redis.from_url(own_redis.url)
    try:
        stored = await raw.get(key)
    finally:
        await raw.aclose()
    seen.append(str((await details(b, admin, guest.id))["full_name"]))
    if stored is not None:  # whatever Redis holds now is the new name
        seen.append("Written Then Killed" if b"Written Then Killed" in stored else "Old Name")
    return seen


async def test_a_writer_killed_after_commit_while_redis_is_paused_leaves_nothing_stale(
    worlds_on_own_redis: tuple[World, World], own_redis: EmbeddedRedis, clean_database: str
) -> None:
    a, b = worlds_on_own_redis
    seen = await killed_writer_during_pause(a, b, own_redis, clean_database)
    assert set(seen) == {"Written Then Killed"}


async def test_control_without_the_outbox_the_old_entry_returns_after_the_pause(
    worlds_on_own_redis: tuple[World, World], own_redis: EmbeddedRedis, clean_database: str
) -> None:
    a, b = worlds_on_own_redis
    for world in (a, b):
        silence_outbox(world)
    seen = await killed_writer_during_pause(a, b, own_redis, clean_database)
    assert "Old Name" in seen
