"""``hita migrate``: apply pending migrations."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

from hita.cli.servers import servers
from hita.config import Config
from hita.db.database import open_database
from hita.db.migrate import apply_migrations


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("migrate", help="apply pending database migrations")
    parser.set_defaults(run=run)


async def _migrate(config: Config) -> list[str]:
    # open_database would migrate silently; here the names applied are the output
    manual = dataclasses.replace(config.database, auto_migrate=False)
    async with open_database(manual) as database, database.connection() as conn:
        return await apply_migrations(conn)


def run(args: argparse.Namespace, config: Config) -> int:
    with servers(config, redis=False) as resolved:
        applied = asyncio.run(_migrate(resolved))
    print("\n".join(f"applied {name}" for name in applied) or "database is up to date")
    return 0
