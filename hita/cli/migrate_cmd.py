"""``hita migrate``: apply pending migrations."""

from __future__ import annotations

import argparse
import asyncio

from hita.config import Config
from hita.db.database import Database, create_pool
from hita.db.migrate import apply_migrations
from hita.embedded import embedded_dependencies


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("migrate", help="apply pending database migrations")
    parser.set_defaults(run=run)


async def _migrate(config: Config) -> list[str]:
    pool = await create_pool(config.database)
    try:
        async with Database(pool, config.database.acquire_timeout_s).connection() as conn:
            return await apply_migrations(conn)
    finally:
        await pool.close()


def run(args: argparse.Namespace, config: Config) -> int:
    with embedded_dependencies(config, redis=False) as resolved:
        applied = asyncio.run(_migrate(resolved))
    print("\n".join(f"applied {name}" for name in applied) or "database is up to date")
    return 0
