"""``hita config``: the effective settings, where each comes from, and the
servers they lead to; secrets and passwords masked. ``--markdown`` prints the
documentation's table instead (docs/configuration.md; README's with
``--differing``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Final

from hita.config import Config, Kind, Resolved, redact, resolve, settings_markdown
from hita.devsecret import secret_path

MAX_VALUE_CHARS: Final = 48


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("config", help="print the effective configuration")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table of settings of docs/configuration.md instead",
    )
    parser.add_argument(
        "--differing",
        action="store_true",
        help="with --markdown: only the settings whose development and production values differ",
    )
    parser.set_defaults(run=run)


def shown(row: Resolved) -> str:
    value = row.value
    if value in (None, ""):
        return "(unset)"
    if row.setting.secret:
        return "(set, hidden)"
    if row.setting.kind is Kind.URL:
        value = redact(value)
    if len(value) > MAX_VALUE_CHARS:
        value = value[: MAX_VALUE_CHARS - 3] + "..."
    return value


def servers(config: Config) -> list[str]:
    root = config.data_dir.resolve()
    database = (
        redact(config.database.url)
        if config.database.url
        else f"embedded PostgreSQL, data in {root / 'postgres'}"
    )
    if config.redis.url:
        redis = redact(config.redis.url)
    elif config.redis.nodes:
        nodes = ",".join(f"{host}:{port}" for host, port in config.redis.nodes)
        redis = f"{config.redis.mode} {nodes}"
    else:
        redis = f"embedded Redis, socket under {root / 'redis'}"
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
    if args.markdown:
        print(settings_markdown(differing_only=args.differing))
    else:
        print(table(args.environ, config))
    return 0
