"""No read older than an acknowledged write, on any instance, whatever Redis does.

Two instances (A writes, B reads) on one PostgreSQL and one Redis, one path of
the protocol (docs/cache.md) per test, each with a control that removes the
mechanism and shows the stale read coming back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.app import create_app
from hita.appkeys import CACHE, CACHE_KEYS, COHERENCE
from hita.cache.breaker import BreakerState
from hita.cache.client import RedisCache
from hita.db.outbox import _RENEW
from hita.domain.roles import Role
from hita.domain.users import Principal, Standing
from hita.embedded import EmbeddedRedis
from hita.errors import DatabaseUnavailable
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.helpers import state_of
from tests.integration.conftest import (
    Account,
    World,
    body_of,
    deafen,
    silence_outbox,
    until,
)

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


# -- the reader's session: dropped, or hung ------------------------------------------


async def drop_session(world: World, database_url: str) -> None:
    """Terminate the instance's reader session from the server side."""
    session = world.app[COHERENCE].session
    connections = session.connections
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", session.pid)
    finally:
        await conn.close()
    await until(lambda: session.connections > connections, "the instance never reconnected")


async def test_a_dropped_session_takes_in_what_was_committed_meanwhile(
    worlds: tuple[World, World], clean_database: str
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    silence_outbox(a)  # only B's own session can tell B of the change
    await drop_session(b, clean_database)
    await rename_by_sql(clean_database, guest.id, "Changed While Away")
    assert await seen_by(b, admin, guest.id, "Changed While Away") < SEEN_WITHIN_S


async def test_control_a_reader_that_takes_nothing_in_keeps_the_old_name(
    worlds: tuple[World, World], clean_database: str
) -> None:
    a, b = worlds
    admin, guest = await cached_guest(a, b)
    for world in (a, b):
        silence_outbox(world)
    await drop_session(b, clean_database)
    await rename_by_sql(clean_database, guest.id, "Changed While Away")
    assert await seen_by(b, admin, guest.id, "Changed While Away") == float("inf")


async def hung_reader(a: World, b: World, monkeypatch: pytest.MonkeyPatch) -> tuple[str, float]:
    """B's session backend stopped (SIGSTOP) and B's path to open another
    one lost: B can neither renew nor take anything in. A's invalidation times
    out, so A waits for B: what B shows right after A's answer, and how long
    A's write took."""
    admin, guest = await cached_guest(a, b)
    time_out_invalidations(monkeypatch, a)

    async def unreachable() -> None:
        raise DatabaseUnavailable("path lost")

    monkeypatch.setattr(b.app[COHERENCE].session, "connect", unreachable)
    backend = b.app[COHERENCE].session.pid
    assert backend is not None
    os.kill(backend, signal.SIGSTOP)
    try:
        started = time.monotonic()
        await rename(a, admin, guest.id, "New Name")
        took = time.monotonic() - started
        shown = str((await details(b, admin, guest.id))["full_name"])
    finally:
        os.kill(backend, signal.SIGCONT)
    return shown, took


async def test_a_hung_reader_is_waited_out_by_its_lease(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = worlds
    shown, took = await hung_reader(a, b, monkeypatch)
    assert shown == "New Name"
    lease = a.config.cache.reader_lease_s
    assert lease - 0.5 < took < lease + 0.5  # A waited for B's lease to run out


async def test_control_a_reader_that_ignores_its_lease_serves_the_old_name(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = worlds
    pending = b.app[CACHE].pending
    monkeypatch.setattr(type(pending), "covers", lambda self, key: self.covers_specifically(key))
    shown, _ = await hung_reader(a, b, monkeypatch)
    assert shown == "Old Name"


CLOCK_JUMP_S = 0.9  # how far PostgreSQL's clock runs ahead of B's (under a lease)


async def servers_clock_ahead(b: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL's clock jumped ``CLOCK_JUMP_S`` ahead of B's: every lease B
    is granted from now on ends that much earlier by the server's clock than
    by B's own (B still trusts Redis for its whole lease, on its own clock)."""
    session = b.app[COHERENCE].session
    renew = session.renew

    async def renew_with_the_servers_clock_ahead(lease_s: float, *args: Any) -> Any:
        return await renew(lease_s - CLOCK_JUMP_S, *args)

    monkeypatch.setattr(session, "renew", renew_with_the_servers_clock_ahead)
    renewed = b.app[COHERENCE].stats.renewals
    await until(lambda: b.app[COHERENCE].stats.renewals >= renewed + 2, "B never renewed")


async def test_a_reader_whose_lease_the_servers_clock_ends_early_is_still_waited_for(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer ignores a reader only once its lease ended a whole lease ago by
    PostgreSQL's clock: a jump of that clock shorter than a lease cannot end
    the writer's wait while the reader still trusts Redis."""
    a, b = worlds
    await servers_clock_ahead(b, monkeypatch)
    shown, took = await hung_reader(a, b, monkeypatch)
    assert shown == "New Name"
    assert took > a.config.cache.reader_lease_s - 0.5  # A waited B's lease out on its own clock


async def test_control_a_writer_that_trusts_the_servers_clock_serves_the_old_name(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = worlds
    session = a.app[COHERENCE].session
    readers = session.readers

    async def live_leases_only(grace_s: float) -> Any:
        return await readers(0.0)

    monkeypatch.setattr(session, "readers", live_leases_only)
    await servers_clock_ahead(b, monkeypatch)
    shown, _ = await hung_reader(a, b, monkeypatch)
    assert shown == "Old Name"


LATE_BY_S = 2.5  # how long the abandoned renewal's transaction began before it commits
BACKWARD_RENEW = _RENEW.replace(  # the renewal as it was: the lease may move back
    "GREATEST(r.lease_until, EXCLUDED.lease_until)", "EXCLUDED.lease_until"
)


async def late_renewal_then_hung(
    a: World, b: World, monkeypatch: pytest.MonkeyPatch, direct_url: str, renew_sql: str
) -> str:
    """B gave up on a renewal (its timeout) and renewed on a new connection,
    but the old backend's statement, whose transaction began ``LATE_BY_S``
    earlier, commits only now (played by a side connection). Then B's path
    is lost as in ``hung_reader``; A renames the guest: what B shows."""
    admin, guest = await cached_guest(a, b)
    time_out_invalidations(monkeypatch, a)
    coherence = b.app[COHERENCE]
    late = await asyncpg.connect(direct_url, statement_cache_size=0)
    try:
        async with late.transaction():
            await late.fetchval("SELECT now()")  # its transaction (and now()) begins here
            await asyncio.sleep(LATE_BY_S)
            renewed = coherence.stats.renewals
            await until(lambda: coherence.stats.renewals > renewed, "B never renewed")

            async def unreachable() -> None:
                raise DatabaseUnavailable("path lost")

            monkeypatch.setattr(coherence.session, "connect", unreachable)
            backend = coherence.session.pid
            assert backend is not None
            os.kill(backend, signal.SIGSTOP)
            await late.fetchrow(
                renew_sql, coherence.session.instance, coherence._lease_s, coherence._applied, []
            )
        try:
            await rename(a, admin, guest.id, "New Name")
            return str((await details(b, admin, guest.id))["full_name"])
        finally:
            os.kill(backend, signal.SIGCONT)
    finally:
        await late.close()


async def test_a_renewal_that_commits_late_does_not_move_the_lease_back(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    a, b = worlds
    assert await late_renewal_then_hung(a, b, monkeypatch, database_url, _RENEW) == "New Name"


async def test_control_a_lease_that_moves_back_lets_the_writer_answer_early(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    a, b = worlds
    assert BACKWARD_RENEW != _RENEW
    shown = await late_renewal_then_hung(a, b, monkeypatch, database_url, BACKWARD_RENEW)
    assert shown == "Old Name"


WRITES: Final = 200


async def test_a_burst_of_writes_leaves_the_reader_session_to_its_renewals(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledgements go through the shared pool in batches: the reader
    session runs only the lease's own statements, so a write load cannot
    starve its renewals (one acknowledgement per write queued on the session
    did: under `make bench-writes` the instance stopped trusting Redis and read
    everything from PostgreSQL)."""
    a, _ = worlds
    admin = await a.make_user(Role.ADMIN)
    guests = [await a.make_user() for _ in range(10)]
    session = a.app[COHERENCE].session
    statements: list[str] = []
    fetchrow = session._fetchrow

    async def counted(sql: str, *args: Any) -> Any:
        statements.append(sql)
        return await fetchrow(sql, *args)

    monkeypatch.setattr(session, "_fetchrow", counted)
    untrusted = 0

    async def write(n: int) -> None:
        nonlocal untrusted
        await rename(a, admin, guests[n % len(guests)].id, f"Name {n}")
        untrusted += not a.app[CACHE].pending.trusted

    for start in range(0, WRITES, 20):
        await asyncio.gather(*(write(n) for n in range(start, start + 20)))
    assert untrusted == 0
    assert all("cache_readers" in sql or "pg_notify" in sql for sql in statements)
    outbox = a.app[COHERENCE].outbox  # every row acknowledged, by A's batches or a reader
    deadline = time.monotonic() + 10
    while (await outbox.waiting())[0]:
        assert time.monotonic() < deadline, "outbox rows never acknowledged"
        await asyncio.sleep(0.05)
    assert a.app[COHERENCE].stats.rows_acked > 0  # A's batches took part


async def test_rows_are_acknowledged_once_applied_and_pruned_after_their_retention(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    a, b = await two_worlds(
        aiohttp_client, clean_database, clean_redis, CACHE_OUTBOX_RETENTION_S="0"
    )
    admin, guest = await cached_guest(a, b)
    await rename(a, admin, guest.id, "New Name")
    coherence = a.app[COHERENCE]
    deadline = time.monotonic() + 10
    while await coherence.outbox.count():
        assert time.monotonic() < deadline, "the outbox was never pruned"
        await coherence.sweep_once()
        await asyncio.sleep(0.05)
    assert a.app[COHERENCE].stats.swept + b.app[COHERENCE].stats.swept == 0  # nothing left over
    assert a.app[COHERENCE].stats.rows_acked + b.app[COHERENCE].stats.rows_acked >= 1


async def test_the_sweep_applies_rows_nobody_acknowledged(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    a, b = await two_worlds(
        aiohttp_client, clean_database, clean_redis, CACHE_READER_LEASE_MS="200"
    )
    for world in (a, b):
        deafen(world)
    await a.make_user()
    coherence = a.app[COHERENCE]
    assert (await coherence.outbox.waiting())[0] == 1
    deadline = time.monotonic() + 10
    while (await coherence.outbox.waiting())[0]:
        assert time.monotonic() < deadline, "the sweep never applied the row"
        await coherence.sweep_once()
        await asyncio.sleep(0.05)
    # this sweep, or the other instance's, which runs too
    assert a.app[COHERENCE].stats.swept + b.app[COHERENCE].stats.swept == 1


# -- Redis paused; the writer dies right after its commit -------------------------

WRITER = """
import asyncio, os, signal, sys
import asyncpg

async def main() -> None:
    conn = await asyncpg.connect(sys.argv[1], statement_cache_size=0)  # PgBouncer too
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
    # Nobody acknowledged this write: it reaches B through the outbox, within a
    # renewal (at once when B is asked, as a waiting writer would ask).
    assert await b.app[COHERENCE].confirm_delivery()
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


# -- a password change ends the user's earlier tokens, on every instance -------------


async def old_token_after_a_password_change(a: World, b: World) -> list[int]:
    """What the guest's token made before the change gets, on A and on B."""
    admin, guest = await cached_guest(a, b)
    path = f"/v1.0/user/{guest.id}"
    assert (await b.client.get(path, headers=guest.headers)).status == 200  # cached on B
    response = await a.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"password": "a new secret"}, headers=admin.headers
    )
    assert response.status == 200
    return [(await w.client.get(path, headers=guest.headers)).status for w in (a, b)]


async def test_a_password_change_ends_earlier_tokens_on_every_instance(
    worlds: tuple[World, World],
) -> None:
    a, b = worlds
    assert await old_token_after_a_password_change(a, b) == [401, 401]


async def test_control_without_the_check_the_old_token_still_works(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    def admits_any_time(self: Standing, principal: Principal) -> bool:
        return principal.user_id == self.user_id and principal.role is self.role

    monkeypatch.setattr(Standing, "admits", admits_any_time)
    a, b = worlds
    assert await old_token_after_a_password_change(a, b) == [200, 200]
