"""``hita cache stats | clear | clear-user ID | warm | test``: the management
endpoints from the server's shell, against the configured Redis and database."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, closing
from typing import Any

from hita.cli.cache_access import open_cache
from hita.cli.servers import servers
from hita.config import Config
from hita.db.database import open_database
from hita.domain.ids import is_user_id
from hita.services.cache_admin import CacheAdmin
from hita.services.cached_users import CachedUserService
from hita.services.passwords import Passwords
from hita.services.warmup import CacheWarmupService

ACTIONS = ("stats", "clear", "clear-user", "warm", "test")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("cache", help="inspect and manage the Redis cache")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("stats", help="Redis figures and key counts per cache type")
    actions.add_parser("clear", help="remove every cached entry of the service")
    clear_user = actions.add_parser("clear-user", help="remove one user's cached details")
    clear_user.add_argument("user_id")
    actions.add_parser("warm", help="fill the essential caches")
    actions.add_parser("test", help="set, get, exists, delete on a key of its own")
    parser.set_defaults(run=run)


def table(rows: Iterable[tuple[str, Any]], title: str = "") -> str:
    rows = list(rows)
    width = max((len(name) for name, _ in rows), default=0)
    lines = [title, "-" * max(len(title), 1)] if title else []
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(lines)


def flat(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(name, value) for name, value in body.items() if not isinstance(value, dict)]


@asynccontextmanager
async def cache_admin(config: Config, *, with_database: bool) -> AsyncIterator[CacheAdmin]:
    async with open_cache(config) as keys:
        if not with_database:
            yield CacheAdmin(keys, None, config.cache.scan_budget_s)
            return
        with closing(Passwords(config.auth, workers=1)) as passwords:
            async with open_database(config.database) as database:
                users = CachedUserService(database, passwords, keys, config.cache.ttls)
                warmup = CacheWarmupService(users)
                yield CacheAdmin(keys, warmup, config.cache.scan_budget_s)


async def _run(action: str, user_id: str | None, config: Config) -> str:
    async with cache_admin(config, with_database=action == "warm") as admin:
        if action == "stats":
            body = await admin.stats()
            return "\n\n".join(
                [
                    table(flat(body["cache_info"]), "Redis"),
                    table(flat(body["key_counts"]), "Keys per cache type (SCAN)"),
                ]
            )
        if action == "clear":
            return f"All user caches cleared successfully ({await admin.clear()} keys removed)"
        if action == "clear-user":
            await admin.clear_user(str(user_id))
            return f"Cache cleared for user {user_id}"
        if action == "warm":
            result = await admin.warm()
            return (
                f"Essential caches warmed successfully: {', '.join(result.warmed)}"
                f" in {result.seconds * 1000:.0f} ms"
            )
        body = await admin.self_test()
        return table(body["test_results"].items(), "Cache self-test")


def run(args: argparse.Namespace, config: Config) -> int:
    user_id = getattr(args, "user_id", None)
    if args.action == "clear-user" and not is_user_id(user_id):
        print("hita: the user id must be a 10-digit number", file=sys.stderr)
        return 2
    with servers(config, database=args.action == "warm") as resolved:
        print(asyncio.run(_run(args.action, user_id, resolved)))
    return 0
