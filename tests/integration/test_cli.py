"""The command line in a subprocess, as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from argon2 import PasswordHasher
from redis.asyncio import Redis

from hita.cache.keys import KeyBuilder
from hita.constants import NAMESPACES
from tests.conftest import TEST_ROOT
from tests.integration.test_health import closed_port

pytestmark = pytest.mark.slow


def hita(
    database_url: str,
    *args: str,
    stdin: str = "",
    data_dir: Path = TEST_ROOT,
    **environ: str,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(HITA_ENV="test", DATABASE_URL=database_url, HITA_DATA_DIR=str(data_dir))
    env.update(environ)
    return subprocess.run(
        [sys.executable, "-m", "hita", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_user_create_makes_the_first_superadmin_with_a_password_from_stdin(
    clean_database: str,
) -> None:
    result = hita(
        clean_database,
        "user", "create", "--username", "root.admin", "--email", "root@hotel.example",
        "--role", "superadmin", "--password", "-",
        stdin="a long secret phrase\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    user = json.loads(result.stdout)
    assert user["role"] == "superadmin"
    assert user["username"] == "root.admin"
    assert "argon2" not in result.stdout + result.stderr
    assert "a long secret phrase" not in result.stdout + result.stderr

    conn = await asyncpg.connect(clean_database)
    try:
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$")

    again = hita(
        clean_database,
        "user", "create", "--username", "ROOT.admin", "--email", "x@hotel.example",
        "--password", "another password",
    )  # fmt: skip
    assert again.returncode == 1
    assert "username already exists" in again.stderr
    bad = hita(
        clean_database,
        "user", "create", "--username", "x", "--email", "nope", "--password", "short",
    )  # fmt: skip
    assert bad.returncode == 2
    assert '"email"' in bad.stderr
    assert '"password"' in bad.stderr


async def test_seed_loads_consistent_users_and_prints_working_logins(
    clean_database: str, tmp_path: Path
) -> None:
    result = hita(clean_database, "seed", "--users", "200", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "seeded 200 users" in result.stdout
    password = result.stdout.split("password: ")[1].split()[0]
    assert (tmp_path / "demo-logins.txt").read_text() in result.stdout
    assert "demo.admin" in result.stdout
    assert "demo.superadmin" in result.stdout

    conn = await asyncpg.connect(clean_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 203
        mismatched = await conn.fetchval(
            """
            SELECT count(*) FROM users u
            WHERE u.points <> COALESCE(
                (SELECT sum(amount) FROM points_transactions t WHERE t.user_id = u.id), 0)
            """
        )
        assert mismatched == 0
        broken_runs = await conn.fetchval(
            """
            SELECT count(*) FROM (
                SELECT balance_after, sum(amount) OVER (
                    PARTITION BY user_id ORDER BY created_at, id) AS running
                FROM points_transactions) t
            WHERE balance_after <> running
            """
        )
        assert broken_runs == 0
        assert await conn.fetchval("SELECT count(*) FROM points_transactions") > 200
        assert await conn.fetchval("SELECT count(*) FROM user_permissions") > 0
        roles = {
            r["role"]: r["n"]
            for r in await conn.fetch("SELECT role, count(*) AS n FROM users GROUP BY role")
        }
        assert roles["user"] > 150
        assert sum(roles.values()) == 203
        demo_hash = await conn.fetchval(
            "SELECT password_hash FROM users WHERE username = 'demo.admin'"
        )
    finally:
        await conn.close()

    assert PasswordHasher().verify(demo_hash, password)

    second = hita(clean_database, "seed", "--users", "10", data_dir=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "seeded 10 users" in second.stdout


async def test_seed_is_refused_in_production(clean_database: str) -> None:
    result = hita(
        clean_database,
        "seed",
        "--users",
        "1",
        HITA_ENV="production",
        JWT_SECRET="p" * 40,
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert result.returncode == 2
    assert "not production" in result.stderr


async def test_changes_made_by_the_cli_invalidate_the_caches(
    clean_database: str, clean_redis: str
) -> None:
    keys = KeyBuilder()
    redis = Redis.from_url(clean_redis)
    try:
        for ns in NAMESPACES:
            await redis.set(keys.namespace(ns).generation_key, b"before")
        await redis.set("user_details:1234567890", b"v-cached")

        created = hita(
            clean_database,
            "user",
            "create",
            "--username",
            "night.porter",
            "--email",
            "porter@hotel.example",
            "--password",
            "a long phrase",
            REDIS_URL=clean_redis,
        )
        assert created.returncode == 0, created.stderr
        generations = [await redis.get(keys.namespace(ns).generation_key) for ns in NAMESPACES]
        assert b"before" not in generations
        assert await redis.exists("user_details:1234567890")  # another user: kept

        seeded = hita(clean_database, "seed", "--users", "5", REDIS_URL=clean_redis)
        assert seeded.returncode == 0, seeded.stderr
        assert not await redis.exists("user_details:1234567890")  # all users changed
    finally:
        await redis.aclose()


def test_the_cli_says_so_when_it_cannot_invalidate(clean_database: str) -> None:
    result = hita(
        clean_database,
        "user",
        "create",
        "--username",
        "late.guest",
        "--email",
        "late@hotel.example",
        "--password",
        "a long phrase",
        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
    )
    assert result.returncode == 0, result.stderr
    assert "Redis unreachable, caches not invalidated" in result.stderr


async def test_cache_commands_print_readable_tables(clean_database: str, clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis)
    try:
        await redis.set("user_details:1234567890", b"v")
        await redis.set("user_details:1234567891", b"v")

        stats = hita(clean_database, "cache", "stats", REDIS_URL=clean_redis)
        assert stats.returncode == 0, stats.stderr
        assert "Keys per cache type (SCAN)" in stats.stdout
        rows = dict(
            line.split(maxsplit=1)
            for line in stats.stdout.splitlines()
            if len(line.split(maxsplit=1)) == 2
        )
        assert rows["user_details_keys"] == "2"
        assert rows["redis_version"].startswith("6.")

        test = hita(clean_database, "cache", "test", REDIS_URL=clean_redis)
        assert test.returncode == 0, test.stderr
        assert "get_after_delete" in test.stdout
        assert "False" not in test.stdout

        one = hita(clean_database, "cache", "clear-user", "1234567890", REDIS_URL=clean_redis)
        assert one.stdout.strip() == "Cache cleared for user 1234567890"
        assert await redis.exists("user_details:1234567890", "user_details:1234567891") == 1
        bad = hita(clean_database, "cache", "clear-user", "12*", REDIS_URL=clean_redis)
        assert bad.returncode == 2

        warm = hita(clean_database, "cache", "warm", REDIS_URL=clean_redis)
        assert warm.returncode == 0, warm.stderr
        assert warm.stdout.startswith("Essential caches warmed successfully")

        clear = hita(clean_database, "cache", "clear", REDIS_URL=clean_redis)
        assert clear.returncode == 0, clear.stderr
        assert "All user caches cleared successfully" in clear.stdout
        assert [k async for k in redis.scan_iter()] == []
    finally:
        await redis.aclose()


def test_cache_commands_fail_clearly_without_redis(clean_database: str) -> None:
    result = hita(
        clean_database, "cache", "stats", REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "hita: Redis cache not available"


def test_config_prints_a_table_with_sources_and_no_secret(clean_database: str) -> None:
    result = hita(
        clean_database.replace("postgresql://postgres@", "postgresql://postgres:db-pw-9@"),
        "config",
        JWT_SECRET="t" * 40,
        PORT="9001",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "HITA configuration, profile test"
    assert ["PORT", "9001", "environment"] in [line.split() for line in lines]
    assert "t" * 40 not in result.stdout
    assert "db-pw-9" not in result.stdout
    assert any(line.startswith("database:    postgresql://postgres:***@") for line in lines)
