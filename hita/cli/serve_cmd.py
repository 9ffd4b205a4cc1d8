"""``hita serve``: run the HTTP service (with embedded servers when no URLs are set)."""

from __future__ import annotations

import argparse

from aiohttp import web

from hita.app import create_app
from hita.cli.seed_cmd import seed_demo_if_empty
from hita.config import Config
from hita.constants import SHUTDOWN_TIMEOUT_S
from hita.embedded import embedded_dependencies
from hita.malloc import pin_mmap_threshold


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="run the HTTP service")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    pin_mmap_threshold()  # a long-running process: keep the heap from creeping
    with embedded_dependencies(config) as resolved:
        if config.database.url is None and not config.is_production:
            seed_demo_if_empty(resolved)
        web.run_app(
            create_app(resolved),
            host=resolved.http.host,
            port=resolved.http.port,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            print=lambda _: print(
                f"HITA serving on http://{resolved.http.host}:{resolved.http.port}"
                " (Ctrl-C to stop)",
                flush=True,
            ),
        )
    return 0
