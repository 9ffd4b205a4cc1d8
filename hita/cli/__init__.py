"""``hita``: the command line, a thin shell over the same services as the API."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from hita import __version__
from hita.cli import cache_cmd, config_cmd, migrate_cmd, seed_cmd, serve_cmd, user_cmd
from hita.config import ConfigError, load_config, unknown_variables
from hita.errors import HitaError
from hita.logs import setup_logging

COMMANDS = (serve_cmd, migrate_cmd, user_cmd, seed_cmd, cache_cmd, config_cmd)

log = logging.getLogger("hita.config")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hita", description="HITA, the ITT Hotel API")
    parser.add_argument("--version", action="version", version=f"hita {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one command; exit code 2 for a configuration error, 1 for any other
    refusal, each one line on stderr. Bare ``hita`` prints the help."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    args.environ = os.environ if environ is None else environ  # `hita config` shows sources
    try:
        config = load_config(args.environ)
    except ConfigError as exc:
        print(f"hita: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    for warning in unknown_variables(args.environ):
        log.warning("%s", warning)
    try:
        code: int = args.run(args, config)
    except ConfigError as exc:  # found once a server is asked, e.g. a DSN asyncpg refuses
        print(f"hita: configuration error: {exc}", file=sys.stderr)
        return 2
    except HitaError as exc:
        print(f"hita: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
