"""Ordered plain-SQL migrations (``migrations/NNNN_name.sql``).

Each file runs in its own transaction and is recorded in ``schema_migrations``
with a checksum; an advisory lock keeps two instances from migrating at once,
and a recorded file that was edited afterwards stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg

from hita.errors import HitaError

log = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
_LOCK_ID: Final = 0x4849_5441  # "HITA"
_NAME_RE: Final = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class MigrationError(HitaError):
    """The migrations on disk and those recorded in the database disagree."""


class MigrationsPending(MigrationError):
    """Automatic migration is off and the database lacks some migrations."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_name.sql")
        migrations.append(Migration(match.group(1), path.name, path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


async def apply_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is pending; returns the names applied (empty when up to date)."""
    migrations = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    text PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done = []
        for migration in migrations:
            recorded = applied.get(migration.version)
            if recorded is not None:
                if recorded != migration.checksum:
                    raise MigrationError(f"{migration.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration %s", migration.name)
            done.append(migration.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)


async def pending_migrations(
    conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """The names of the migrations not applied yet; reads only, takes no lock."""
    migrations = discover(directory)
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
        return [m.name for m in migrations]
    applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.name for m in migrations if m.version not in applied]


async def check_migrated(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> None:
    """Raise ``MigrationsPending`` with the one line to show when any is pending."""
    pending = await pending_migrations(conn, directory)
    if pending:
        raise MigrationsPending(
            f"the database lacks {len(pending)} migration(s) ({', '.join(pending)}) and"
            " DB_AUTO_MIGRATE is off: run `hita migrate` first"
        )
