"""``hita serve``: run the HTTP service (with embedded servers when no URLs are set)."""

from __future__ import annotations

import argparse

from aiohttp import web

from hita.app import create_app
from hita.cli.seed_cmd import seed_demo_if_empty
from hita.config import Config
from hita.constants import SHUTDOWN_TIMEOUT_S
from hita.embedded import embedded_dependencies
from hita.logs import skip_unused_record_fields
from hita.runtime import frozen_heap


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="run the HTTP service")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    skip_unused_record_fields()
    with embedded_dependencies(config) as resolved:
        if config.database.url is None and not config.is_production:
            seed_demo_if_empty(resolved)
        app = create_app(resolved)
        app.cleanup_ctx.append(frozen_heap)
        web.run_app(
            app,
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
