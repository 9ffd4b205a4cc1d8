"""The migration runner: ordered, idempotent, and strict about edited files."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from hita.app import create_app
from hita.db.migrate import (
    MIGRATIONS_DIR,
    MigrationError,
    MigrationsPending,
    apply_migrations,
    discover,
    pending_migrations,
)
from tests.conftest import make_config


@pytest.fixture
async def scratch(clean_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose tables go to a schema of their own, dropped afterwards."""
    conn = await asyncpg.connect(clean_database)
    await conn.execute("DROP SCHEMA IF EXISTS migration_test CASCADE; CREATE SCHEMA migration_test")
    await conn.execute("SET search_path TO migration_test")
    try:
        yield conn
    finally:
        await conn.execute("DROP SCHEMA migration_test CASCADE")
        await conn.close()


def test_migrations_are_numbered_in_order() -> None:
    names = [m.name for m in discover()]
    assert names == sorted(names)
    assert names[0] == "0001_users.sql"


async def test_a_fresh_database_gets_every_migration_once(scratch: asyncpg.Connection) -> None:
    applied = await apply_migrations(scratch)
    assert applied == [m.name for m in discover()]
    assert await apply_migrations(scratch) == []
    tables = {
        r["tablename"]
        for r in await scratch.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'migration_test'"
        )
    }
    assert {"users", "points_transactions", "user_permissions", "schema_migrations"} <= tables


async def test_an_edited_migration_is_refused(scratch: asyncpg.Connection, tmp_path: Path) -> None:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    await apply_migrations(scratch, tmp_path)
    edited = tmp_path / "0001_users.sql"
    edited.write_text(edited.read_text() + "\n-- an afterthought\n")
    with pytest.raises(
        MigrationError, match=re.escape("0001_users.sql changed after it was applied")
    ):
        await apply_migrations(scratch, tmp_path)


async def test_a_new_migration_is_applied_alone(
    scratch: asyncpg.Connection, tmp_path: Path
) -> None:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    await apply_migrations(scratch, tmp_path)
    (tmp_path / "0999_extra.sql").write_text("CREATE TABLE extra (id int);")
    assert await apply_migrations(scratch, tmp_path) == ["0999_extra.sql"]


async def test_a_failing_migration_leaves_nothing_behind(
    scratch: asyncpg.Connection, tmp_path: Path
) -> None:
    (tmp_path / "0001_half.sql").write_text("CREATE TABLE half (id int); SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await apply_migrations(scratch, tmp_path)
    assert await scratch.fetchval("SELECT to_regclass('migration_test.half')") is None
    assert await scratch.fetchval("SELECT count(*) FROM schema_migrations") == 0


def test_badly_named_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_users.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=re.escape("NNNN_name.sql")):
        discover(tmp_path)


async def test_pending_migrations_are_those_not_recorded(scratch: asyncpg.Connection) -> None:
    names = [m.name for m in discover()]
    assert await pending_migrations(scratch) == names
    await apply_migrations(scratch)
    assert await pending_migrations(scratch) == []
    await scratch.execute("DELETE FROM schema_migrations WHERE version = '0002'")
    assert await pending_migrations(scratch) == ["0002_points_transactions.sql"]


async def test_without_auto_migrate_the_app_refuses_an_unmigrated_database(
    unmigrated_database: str, clean_redis: str
) -> None:
    config = make_config(
        DATABASE_URL=unmigrated_database, REDIS_URL=clean_redis, DB_AUTO_MIGRATE="false"
    )
    server = TestServer(create_app(config), host="127.0.0.1")
    with pytest.raises(MigrationsPending, match=r"run `hita migrate` first") as caught:
        await server.start_server()
    await server.close()
    assert "0001_users.sql" in str(caught.value)
    assert "\n" not in str(caught.value)
    conn = await asyncpg.connect(unmigrated_database)
    try:  # nothing was created behind the operator's back
        assert await conn.fetchval("SELECT to_regclass('users')") is None
    finally:
        await conn.close()
