"""``hita config``: show the effective configuration (secrets hidden)."""

from __future__ import annotations

import argparse

from hita.config import Config, settings_markdown


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("config", help="print the effective configuration")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print README's table of environment variables instead",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    print(settings_markdown() if args.markdown else config)
    return 0
