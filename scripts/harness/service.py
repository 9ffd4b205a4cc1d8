"""``hita serve`` as a child of a script: its environment, tokens for it, and
the users it serves (seeded with the service's own seeding code)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import asyncpg
import jwt

from hita.config import SETTINGS, Config, load_config
from hita.db.database import open_database
from hita.services import seeding
from hita.services.passwords import Passwords

SERVE: Final = (sys.executable, "-m", "hita", "serve")
TOKEN_TTL_S: Final = 86_400  # 1 day: longer than any run
_SETTING_NAMES: Final = frozenset(s.name for s in SETTINGS)


def service_env(
    *,
    database_url: str,
    redis_url: str | None,
    data_dir: Path,
    secret: str,
    port: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment without any HITA setting, then the production
    profile on 127.0.0.1 with these servers and secret, then ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in _SETTING_NAMES}
    env.update(
        HITA_ENV="production",
        HITA_DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        JWT_SECRET=secret,
        HOST="127.0.0.1",
    )
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if port is not None:
        env["PORT"] = str(port)
    env.update(settings or {})
    return env


def parse_settings(items: list[str]) -> dict[str, str]:
    """``NAME=value`` items (a script's repeatable ``--env``) as a mapping."""
    return dict(item.partition("=")[::2] for item in items)


def mint_token(secret: str, user_id: str, role: str) -> str:
    """An access token as the service issues them (HS256; sub, role, iat, exp)."""
    now = math.ceil(time.time() * 1000) / 1000  # as hita.services.tokens: to the ms, up
    claims = {"sub": user_id, "role": role, "iat": now, "exp": now + TOKEN_TTL_S}
    return jwt.encode(claims, secret, algorithm="HS256")


def seeded_service(
    *,
    database_url: str,
    redis_url: str,
    data_dir: Path,
    port: int,
    env_items: list[str],
    users: int,
) -> tuple[dict[str, str], str]:
    """The environment (and its new secret) of a ``hita serve`` that logs at
    WARNING in text, with a script's ``--env`` items, on a database migrated
    and seeded with ``users`` users."""
    secret = secrets.token_urlsafe(48)
    settings = {"LOG_LEVEL": "WARNING", "LOG_FORMAT": "text", **parse_settings(env_items)}
    env = service_env(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=data_dir,
        secret=secret,
        port=port,
        settings=settings,
    )
    config = load_config({**env, "HITA_ENV": "development", "DB_AUTO_MIGRATE": "true"})
    print(f"seeding {users} users...", flush=True)
    asyncio.run(seed_users(config, users))
    return env, secret


async def seed_users(config: Config, users: int, seed: int = 7) -> None:
    """``users`` realistic users (a reproducible set), with one demo password."""
    async with open_database(config.database) as database:
        with contextlib.closing(Passwords(config.auth, workers=1)) as passwords:
            password = seeding.new_demo_password()
            password_hash = await passwords.hash(password)
        await seeding.seed(database, users, password, password_hash, rng=random.Random(seed))


async def accounts(
    database_url: str, secret: str, with_tokens: int
) -> tuple[str, list[tuple[str, str]], list[str]]:
    """An active admin's token; the first ``with_tokens`` active users (by id)
    with a token each; every user's id."""
    conn = await asyncpg.connect(database_url)
    try:
        admin = await conn.fetchval(
            "SELECT id FROM users WHERE role = 'admin' AND is_active ORDER BY id LIMIT 1"
        )
        rows = await conn.fetch(
            "SELECT id FROM users WHERE role = 'user' AND is_active ORDER BY id LIMIT $1",
            with_tokens,
        )
        everyone = [r["id"] for r in await conn.fetch("SELECT id FROM users WHERE role = 'user'")]
    finally:
        await conn.close()
    return (
        mint_token(secret, admin, "admin"),
        [(r["id"], mint_token(secret, r["id"], "user")) for r in rows],
        everyone,
    )
