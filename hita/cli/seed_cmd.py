"""``hita seed --users N``: realistic users with points histories and permissions.

Loaded with COPY in one transaction, with a progress bar on stderr; prints
the demo logins (all seeded users share one random password) and writes them
to ``<HITA_DATA_DIR>/demo-logins.txt``. Refused in production.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Final

from tqdm import tqdm

from hita.cli.cache_access import invalidate_user_caches
from hita.cli.servers import servers
from hita.config import Config
from hita.db.database import Database, open_database
from hita.services import seeding
from hita.services.passwords import Passwords

DEMO_USERS: Final = 300  # what the first `make run` loads
LOGINS_FILE: Final = "demo-logins.txt"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("seed", help="load realistic demo users (not in production)")
    parser.add_argument("--users", type=int, required=True, help="how many users to add")
    parser.set_defaults(run=run)


def _progress(rows: Iterable[seeding.Row], label: str, count: int) -> Iterable[seeding.Row]:
    bar: Iterable[seeding.Row] = tqdm(
        rows, desc=label, total=count, unit=" rows", file=sys.stderr, mininterval=0.25
    )
    return bar


def base_url(config: Config) -> str:
    return f"http://{config.http.host}:{config.http.port}"


def logins_path(config: Config) -> Path:
    return config.data_dir / LOGINS_FILE


def write_logins(config: Config, text: str) -> Path:
    path = logins_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(text)
    return path


async def _seed(
    database: Database, config: Config, count: int, track: seeding.Track | None
) -> seeding.SeedResult:
    password = seeding.new_demo_password()
    with closing(Passwords(config.auth, workers=1)) as passwords:
        password_hash = await passwords.hash(password)  # once, for every seeded user
    if track is None:
        return await seeding.seed(database, count, password, password_hash)
    return await seeding.seed(database, count, password, password_hash, track=track)


async def _seed_cli(config: Config, count: int) -> seeding.SeedResult:
    async with open_database(config.database) as database:
        result = await _seed(database, config, count, _progress)
    await invalidate_user_caches(config)
    return result


def run(args: argparse.Namespace, config: Config) -> int:
    if config.is_production:
        print("hita: seed is for development and tests, not production", file=sys.stderr)
        return 2
    if args.users < 0:
        print("hita: --users must be 0 or more", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with servers(config) as resolved:
        result = asyncio.run(_seed_cli(resolved, args.users))
    elapsed = time.perf_counter() - started
    print(
        f"seeded {result.users} users, {result.ledger_rows} points transactions and"
        f" {result.permissions} permissions in {elapsed:.1f} s"
    )
    text = seeding.logins_text(result, base_url(config))
    print(text, end="")
    print(f"(also written to {write_logins(config, text)})")
    return 0


async def _seed_demo_if_empty(config: Config) -> tuple[int, str] | None:
    async with open_database(config.database) as database:
        if await database.fetchval("SELECT to_regclass('users') IS NULL"):
            return None  # not migrated (DB_AUTO_MIGRATE=false): nothing to seed into yet
        if await database.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
            return None
        result = await _seed(database, config, DEMO_USERS, None)
        users = int(await database.fetchval("SELECT count(*) FROM users"))
    await invalidate_user_caches(config)
    return users, seeding.logins_text(result, base_url(config))


def seed_demo_if_empty(config: Config) -> None:
    """The first `make run` on the embedded database: a small demo data set."""
    seeded = asyncio.run(_seed_demo_if_empty(config))
    if seeded is not None:
        users, text = seeded
        path = write_logins(config, text)
        print(
            f"Loaded {users} demo users ({DEMO_USERS} guests and staff, and the demo logins)."
            f" {text}(also written to {path})",
            flush=True,
        )
    elif logins_path(config).exists():
        print(f"Demo logins: {logins_path(config)}", flush=True)
