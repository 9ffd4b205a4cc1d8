"""``hita serve``: run the HTTP service (with embedded servers when no URLs are set)."""

from __future__ import annotations

import argparse
import socket

from aiohttp import web

from hita.app import create_app
from hita.cli.seed_cmd import seed_demo_if_empty
from hita.config import Config
from hita.constants import SHUTDOWN_TIMEOUT_S
from hita.devsecret import with_jwt_secret
from hita.embedded import embedded_dependencies
from hita.errors import HitaError
from hita.logs import skip_unused_record_fields
from hita.runtime import frozen_heap


class CannotListen(HitaError):
    """The HTTP address cannot be bound: in use, not ours, or not an address."""


def bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything else is started, so that a port
    in use costs one line and leaves nothing to clean up. aiohttp starts listening
    on it once the app is ready; until then connections are refused, not queued."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="run the HTTP service")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    skip_unused_record_fields()
    sock = bind(config.http.host, config.http.port)
    config = with_jwt_secret(config)
    with sock, embedded_dependencies(config, long_lived=True) as resolved:
        if config.database.url is None and not config.is_production:
            seed_demo_if_empty(resolved)
        app = create_app(resolved)
        app.cleanup_ctx.append(frozen_heap)
        web.run_app(
            app,
            sock=sock,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            print=lambda _: print(
                f"HITA serving on http://{resolved.http.host}:{resolved.http.port}"
                " (Ctrl-C to stop)",
                flush=True,
            ),
        )
    return 0
