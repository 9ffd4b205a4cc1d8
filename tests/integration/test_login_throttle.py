"""Login: an unknown username takes as long as a wrong password, and failed
logins are throttled per username and per client address, counted in
PostgreSQL before the password is checked: shared by every instance, atomic
under parallel attempts, folded as the login lookup folds usernames, and the
same whether Redis is up or not."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from typing import Any, Final

import asyncpg
import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.appkeys import DATABASE
from hita.db.login_attempts import Counted, LoginAttempts, Window
from hita.domain.roles import Role
from hita.embedded import EmbeddedRedis
from hita.services import login_throttle
from hita.services.tokens import Tokens
from tests.conftest import make_config
from tests.integration.conftest import PASSWORD, World, open_account

LOGIN: Final = "/v1.0/auth/login"
SAMPLES: Final = 5
# argon2id costs enough that skipping it shows (about 20-60 ms a check here),
# little enough that ten logins stay quick.
REAL_ARGON2: Final = {"ARGON2_TIME_COST": "2", "ARGON2_MEMORY_KIB": "16384"}


async def login(client: Any, username: str, password: str, **headers: str) -> ClientResponse:
    response: ClientResponse = await client.post(
        LOGIN, json={"username": username, "password": password}, headers=headers
    )
    return response


async def timed_login(world: World, username: str, password: str) -> float:
    started = time.perf_counter()
    response = await login(world.client, username, password)
    elapsed = time.perf_counter() - started
    assert response.status == 401
    return elapsed


async def test_unknown_usernames_take_as_long_as_wrong_passwords(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    config = make_config(
        DATABASE_URL=clean_database, REDIS_URL=clean_redis, DB_AUTO_MIGRATE="false", **REAL_ARGON2
    )
    app = create_app(config)
    world = World(await aiohttp_client(app), app, config, Tokens(config.auth))
    users = [await world.make_user() for _ in range(SAMPLES)]
    unknown, wrong = [], []
    for n, user in enumerate(users):  # interleaved, so that load on the machine hits both
        unknown.append(await timed_login(world, f"nobody.{n}", PASSWORD))
        wrong.append(await timed_login(world, user.username, "not the password"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    print(
        f"median unknown {statistics.median(unknown) * 1000:.1f} ms, wrong password"
        f" {statistics.median(wrong) * 1000:.1f} ms, ratio {ratio:.2f}"
    )
    assert min(ratio, 1 / ratio) >= 0.5, (unknown, wrong)


async def throttled_world(
    aiohttp_client: AiohttpClient, database_url: str, redis_url: str, **settings: str
) -> World:
    config = make_config(
        DATABASE_URL=database_url, REDIS_URL=redis_url, DB_AUTO_MIGRATE="false", **settings
    )
    app = create_app(config)
    return World(await aiohttp_client(app), app, config, Tokens(config.auth))


async def assert_throttled(response: ClientResponse, window_s: int) -> None:
    assert response.status == 429
    assert await response.json() == {
        "success": False,
        "error": "Too many failed logins; try again later",
    }
    assert 1 <= int(response.headers["Retry-After"]) <= window_s


async def test_failures_for_one_username_are_throttled_whatever_the_password(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await throttled_world(
        aiohttp_client, clean_database, clean_redis, LOGIN_MAX_FAILURES_PER_USER="3"
    )
    guest = await world.make_user()
    other = await world.make_user()
    for _ in range(3):
        assert (await login(world.client, guest.username, "guess")).status == 401
    await assert_throttled(await login(world.client, guest.username, PASSWORD), 300)
    await assert_throttled(await login(world.client, guest.username.upper(), "guess"), 300)
    # Another username from the same address is not affected.
    assert (await login(world.client, other.username, PASSWORD)).status == 200
    # An unknown username is throttled the same way: the 429 tells nothing.
    for _ in range(3):
        assert (await login(world.client, "nobody.here", "guess")).status == 401
    await assert_throttled(await login(world.client, "nobody.here", "guess"), 300)


async def test_a_successful_login_clears_the_usernames_count(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await throttled_world(
        aiohttp_client, clean_database, clean_redis, LOGIN_MAX_FAILURES_PER_USER="3"
    )
    guest = await world.make_user()
    for _ in range(2):
        assert (await login(world.client, guest.username, "typo")).status == 401
    assert (await login(world.client, guest.username, PASSWORD)).status == 200
    for _ in range(2):
        assert (await login(world.client, guest.username, "typo")).status == 401
    assert (await login(world.client, guest.username, PASSWORD)).status == 200


async def test_failures_from_one_address_are_throttled_across_usernames(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await throttled_world(
        aiohttp_client,
        clean_database,
        clean_redis,
        LOGIN_MAX_FAILURES_PER_ADDRESS="4",
        LOGIN_THROTTLE_WINDOW_S="120",
    )
    guest = await world.make_user()
    for n in range(4):
        assert (await login(world.client, f"spray.{n}", "guess")).status == 401
    await assert_throttled(await login(world.client, guest.username, PASSWORD), 120)


async def test_behind_a_trusted_proxy_the_last_forwarded_address_counts(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await throttled_world(
        aiohttp_client,
        clean_database,
        clean_redis,
        LOGIN_MAX_FAILURES_PER_ADDRESS="2",
        TRUST_X_FORWARDED_FOR="true",
    )
    attacker = {"X-Forwarded-For": "198.51.100.7"}
    for n in range(2):
        spoofed = {"X-Forwarded-For": f"10.0.0.{n}, 198.51.100.7"}  # the first entry is a lie
        assert (await login(world.client, f"spray.{n}", "guess", **spoofed)).status == 401
    await assert_throttled(await login(world.client, "spray.9", "guess", **attacker), 300)
    guest = await world.make_user()
    other_client = {"X-Forwarded-For": "203.0.113.5"}
    assert (await login(world.client, guest.username, PASSWORD, **other_client)).status == 200


async def test_instances_share_the_counts_hashed_in_postgres(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    first = await throttled_world(
        aiohttp_client, clean_database, clean_redis, LOGIN_MAX_FAILURES_PER_USER="2"
    )
    second = await throttled_world(
        aiohttp_client, clean_database, clean_redis, LOGIN_MAX_FAILURES_PER_USER="2"
    )
    guest = await first.make_user()
    assert (await login(first.client, guest.username, "guess")).status == 401
    assert (await login(second.client, guest.username, "guess")).status == 401
    await assert_throttled(await login(first.client, guest.username, PASSWORD), 300)
    await assert_throttled(await login(second.client, guest.username, PASSWORD), 300)
    rows = await first.app[DATABASE].fetch(
        "SELECT name, EXTRACT(EPOCH FROM window_ends - now()) AS left_s FROM login_attempts"
    )
    assert len(rows) == 2  # one username, one address
    assert guest.username not in " ".join(row["name"] for row in rows)  # hashed
    assert all(0 < row["left_s"] <= 300 for row in rows)


@pytest.mark.slow
async def test_without_redis_the_counts_are_still_shared(
    aiohttp_client: AiohttpClient, clean_database: str, own_redis: EmbeddedRedis
) -> None:
    first, second = [
        await throttled_world(
            aiohttp_client, clean_database, own_redis.url, LOGIN_MAX_FAILURES_PER_USER="3"
        )
        for _ in range(2)
    ]
    guest = await open_account(first.app, first.tokens, Role.USER)
    own_redis.stop()
    for world in (first, second, first):
        assert (await login(world.client, guest.username, "guess")).status == 401
    await assert_throttled(await login(second.client, guest.username, PASSWORD), 300)
    own_redis.start()
    await assert_throttled(await login(first.client, guest.username, PASSWORD), 300)


# -- parallel attempts, and spellings of one username --------------------------------


async def parallel_wrong_passwords(world: World, username: str, attempts: int) -> list[int]:
    async def attempt() -> int:
        response = await login(world.client, username, "wrong guess")
        await response.read()
        return response.status

    return list(await asyncio.gather(*(attempt() for _ in range(attempts))))


async def test_parallel_wrong_passwords_get_at_most_the_limit_of_401s(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await throttled_world(aiohttp_client, clean_database, clean_redis)
    guest = await world.make_user()
    statuses = await parallel_wrong_passwords(world, guest.username, 40)
    assert statuses.count(401) == world.config.login_throttle.max_failures_per_user == 5
    assert statuses.count(429) == 35


async def test_control_counting_after_the_check_lets_parallel_guesses_through(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    clean_redis: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect back: each attempt reads the count, checks its password,
    and only then counts, so parallel attempts all see a low count."""
    real = LoginAttempts.count

    async def count_after_a_pause(self: LoginAttempts, *args: Any) -> Any:
        await asyncio.sleep(0.05)  # as long as a password check takes
        return await real(self, *args)

    monkeypatch.setattr(LoginAttempts, "count", count_after_a_pause)
    monkeypatch.setattr(login_throttle, "LoginAttempts", _CountingLast)
    world = await throttled_world(aiohttp_client, clean_database, clean_redis)
    guest = await world.make_user()
    statuses = await parallel_wrong_passwords(world, guest.username, 40)
    assert statuses.count(401) > 5


class _CountingLast(LoginAttempts):
    """Reads the counts as they were before this attempt (the check), then counts."""

    async def count(self, username: str, address: str, window_s: int) -> Counted:
        before = await self._db.fetch(
            "SELECT name, attempts FROM login_attempts WHERE name LIKE 'user:%'"
        )
        counted = await super().count(username, address, window_s)
        seen = max((row["attempts"] for row in before), default=0)
        return Counted(dataclasses.replace(counted.user, attempts=seen), counted.address)


async def test_every_spelling_the_lookup_folds_together_shares_one_count(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    world = await throttled_world(
        aiohttp_client, clean_database, clean_redis, LOGIN_MAX_FAILURES_PER_USER="3"
    )
    guest = await world.make_user(username="kiosk.idmin")
    database = world.app[DATABASE]
    spellings = ["KIOSK.IDMIN", "Kiosk.Idmin", "\u212aiosk.idmin", "kiosk.\u0130dmin"]
    folded = [
        s
        for s in spellings
        if await database.fetchval("SELECT lower($1) = lower($2)", s, guest.username)
    ]
    assert len(folded) >= 2  # ASCII case at least; the others as this server's locale folds
    for spelling in (folded * 3)[:3]:
        assert (await login(world.client, spelling, "guess")).status == 401
    await assert_throttled(await login(world.client, guest.username, PASSWORD), 300)


# -- no deadlock between concurrent counts ------------------------------------------

STORM_ROUNDS: Final = 40  # at most; a storm stops at its first error
STORM_WIDTH: Final = 40  # attempts at once
_BEFORE_COUNT: Final = """
WITH names(name) AS (
    VALUES ('user:' || encode(sha256(convert_to(lower($1), 'UTF8')), 'hex')), ('addr:' || $2)
), gone AS (
    DELETE FROM login_attempts WHERE name IN (
        SELECT name FROM login_attempts
        WHERE window_ends < now() AND name NOT IN (SELECT name FROM names) LIMIT $4)
)
INSERT INTO login_attempts AS a (name, attempts, window_ends)
SELECT name, 1, now() + make_interval(secs => $3) FROM names
ON CONFLICT (name) DO UPDATE SET
    attempts = CASE WHEN a.window_ends <= now() THEN 1 ELSE a.attempts + 1 END,
    window_ends = CASE WHEN a.window_ends <= now() THEN EXCLUDED.window_ends
                       ELSE a.window_ends END
RETURNING name, attempts, EXTRACT(EPOCH FROM window_ends - now())::float8 AS left_s
"""


class _AsBefore(LoginAttempts):
    """Control: the statements as they were (expired windows of others removed
    inside the count, a success's two changes in one statement)."""

    async def count(self, username: str, address: str, window_s: int) -> Counted:
        rows = await self._db.fetch(_BEFORE_COUNT, username, address, window_s, 10)
        by = {row["name"].partition(":")[0]: row for row in rows}
        user, addr = (
            Window(by[k]["name"], int(by[k]["attempts"]), float(by[k]["left_s"]))
            for k in ("user", "addr")
        )
        return Counted(user, addr)

    async def succeeded(self, counted: Counted) -> None:
        await self._db.execute(
            "WITH cleared AS (DELETE FROM login_attempts WHERE name = $1)"
            " UPDATE login_attempts SET attempts = attempts - 1"
            " WHERE name = $2 AND attempts > 0",
            counted.user.name,
            counted.address.name,
        )


async def storm(kind: type[LoginAttempts], database_url: str) -> list[BaseException]:
    """Rounds of parallel counts (a few usernames, a few addresses, some
    successes) over windows that have all just expired: the errors raised
    (the first round with any ends the storm)."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=STORM_WIDTH,
        max_size=STORM_WIDTH,
        server_settings={"deadlock_timeout": "20ms"},  # cycles found at once, not after 1 s
    )
    try:
        attempts = kind(pool)

        async def one(n: int) -> None:
            counted = await attempts.count(f"guest{n % 12}", f"10.0.0.{n % 3}", 300)
            if n % 4 == 0:
                await attempts.succeeded(counted)

        errors: list[BaseException] = []
        for _ in range(STORM_ROUNDS):
            results = await asyncio.gather(
                *(one(n) for n in range(STORM_WIDTH)), return_exceptions=True
            )
            errors += [r for r in results if isinstance(r, BaseException)]
            if errors:
                break
            await pool.execute("UPDATE login_attempts SET window_ends = now() - interval '1 s'")
        return errors
    finally:
        await pool.close()


async def test_parallel_counts_over_expired_windows_never_deadlock(
    clean_database: str, database_url: str
) -> None:
    assert await storm(LoginAttempts, database_url) == []


async def test_control_removing_expired_windows_inside_the_count_deadlocks(
    clean_database: str, database_url: str
) -> None:
    errors = await storm(_AsBefore, database_url)
    assert any(isinstance(e, asyncpg.DeadlockDetectedError) for e in errors), errors[:3]
