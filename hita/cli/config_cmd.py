"""``hita config``: the effective settings, where each comes from, and the
servers they lead to; secrets and passwords masked."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from hita.config import Config, Resolved, resolve, settings_markdown
from hita.devsecret import secret_path

SECRETS: Final = frozenset({"JWT_SECRET", "REDIS_PASSWORD"})
URLS: Final = frozenset({"DATABASE_URL", "REDIS_URL"})
MAX_VALUE_CHARS: Final = 48


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("config", help="print the effective configuration")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print README's table of environment variables instead",
    )
    parser.set_defaults(run=run)


def mask_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def shown(row: Resolved) -> str:
    value = row.value
    if value in (None, ""):
        return "(unset)"
    if row.setting.name in SECRETS:
        return "(set, hidden)"
    if row.setting.name in URLS:
        value = mask_url(value)
    if len(value) > MAX_VALUE_CHARS:
        value = value[: MAX_VALUE_CHARS - 3] + "..."
    return value


def servers(config: Config) -> list[str]:
    root = config.data_dir.resolve()
    database = (
        mask_url(config.database.url)
        if config.database.url
        else f"embedded PostgreSQL, data in {root / 'postgres'}"
    )
    redis = (
        mask_url(config.redis.url)
        if config.redis.url
        else f"embedded Redis, socket under {root / 'redis'}"
    )
    secret = (
        "JWT_SECRET"
        if config.auth.jwt_secret
        else f"generated, kept in {secret_path(config)} (mode 0600)"
    )
    return [
        f"database:    {database}",
        f"redis:       {redis}"
        + (f" (keys prefixed {config.redis.key_prefix!r})" if config.redis.key_prefix else ""),
        f"listens on:  http://{config.http.host}:{config.http.port}",
        f"tokens:      signed with {secret}",
    ]


def table(environ: Mapping[str, str], config: Config) -> str:
    profile, rows = resolve(environ)
    name_width = max(len(row.setting.name) for row in rows)
    value_width = max(len(shown(row)) for row in rows)
    lines = [f"HITA configuration, profile {profile}", ""]
    lines.append(f"{'variable':<{name_width}}  {'value':<{value_width}}  source")
    for row in rows:
        lines.append(f"{row.setting.name:<{name_width}}  {shown(row):<{value_width}}  {row.source}")
    return "\n".join([*lines, "", *servers(config)])


def run(args: argparse.Namespace, config: Config) -> int:
    print(settings_markdown() if args.markdown else table(args.environ, config))
    return 0
