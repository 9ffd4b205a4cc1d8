"""``hita serve``: run the HTTP service (with embedded servers when no URLs are set).

``--workers N`` (N > 1) runs N worker processes on one port: each binds it with
SO_REUSEPORT, so the kernel spreads new connections over them, and each opens
its own PostgreSQL and Redis pools. This process starts the embedded servers
(once), starts the workers, and stops them all on Ctrl-C or SIGTERM; if one
worker dies, the others are stopped too. The scheduled statistics refresh still
runs once per slot: the workers claim each slot in Redis like separate instances.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import socket
import sys
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Final

from hita.api import serving
from hita.app import create_app
from hita.cli.seed_cmd import seed_demo_if_empty
from hita.cli.servers import servers
from hita.config import Config
from hita.constants import SHUTDOWN_TIMEOUT_S
from hita.devsecret import with_jwt_secret
from hita.errors import HitaError
from hita.logs import setup_logging, skip_unused_record_fields
from hita.malloc import pin_mmap_threshold
from hita.runtime import die_with_parent, frozen_heap

log = logging.getLogger(__name__)

WORKER_STOP_TIMEOUT_S: Final = SHUTDOWN_TIMEOUT_S + 5.0


class CannotListen(HitaError):
    """The HTTP address cannot be bound: in use, not ours, or not an address."""


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The server's socket, bound before anything else is started, so that a port
    in use costs one line and leaves nothing to clean up. aiohttp starts listening
    on it once the app is ready; until then connections are refused, not queued."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="run the HTTP service")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="worker processes sharing the port (SO_REUSEPORT); default 1",
    )
    parser.set_defaults(run=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace, config: Config) -> int:
    skip_unused_record_fields()
    pin_mmap_threshold()  # a long-running process: keep the heap from creeping
    # Bound first: a port in use costs one line, before anything is started.
    sock = bind(config.http.host, config.http.port, reuse_port=args.workers > 1)
    config = with_jwt_secret(config)
    with sock, servers(config, long_lived=True) as resolved:
        if config.database.url is None and not config.is_production:
            seed_demo_if_empty(resolved)
        if args.workers == 1:
            _serve(resolved, sock=sock, announce=True)
            return 0
        sock.close()  # each worker binds its own socket to the port (SO_REUSEPORT)
        return _supervise(resolved, args.workers)


def _serve(config: Config, *, sock: socket.socket | None = None, announce: bool) -> None:
    app = create_app(config)
    app.cleanup_ctx.append(frozen_heap)
    if sock is None:  # a worker: its own socket on the shared port
        sock = bind(config.http.host, config.http.port, reuse_port=True)
    with sock:
        serving.run(
            app,
            sock,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            announce=(lambda: print(_serving(config), flush=True)) if announce else None,
        )


def _serving(config: Config, workers: int = 1) -> str:
    plural = f" with {workers} workers" if workers > 1 else ""
    return f"HITA serving on http://{config.http.host}:{config.http.port}{plural} (Ctrl-C to stop)"


class _Stop(Exception):
    """SIGTERM or SIGINT reached the supervisor."""


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop


# Handled whatever the supervisor inherited: a shell without job control starts
# a background command with SIGINT ignored, and Python then leaves it ignored,
# while each worker's event loop handles SIGINT whatever it inherited (as
# gunicorn's arbiter does). Ctrl-C then stopped the workers and not the
# supervisor, which reported a worker gone and exited 1.
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


def _supervise(config: Config, workers: int) -> int:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited loop
    processes: list[BaseProcess] = [
        context.Process(target=_worker, args=(config, n), name=f"hita-worker-{n}", daemon=False)
        for n in range(1, workers + 1)
    ]
    previous = {signum: signal.signal(signum, _on_stop_signal) for signum in STOP_SIGNALS}
    code = 0
    try:
        for process in processes:
            process.start()
            log.info("worker %s started, pid %d", process.name, process.pid)
        print(_serving(config, workers), flush=True)
        ended = wait([p.sentinel for p in processes])  # returns when one exits
        code = 1
        for process in processes:
            if process.sentinel in ended:
                log.error("worker %s exited (code %s); stopping", process.name, process.exitcode)
    except _Stop:
        log.info("stopping %d workers", workers)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop_all(processes)
    return code


def _stop_all(processes: list[BaseProcess]) -> None:
    """SIGTERM each live worker (by PID), wait for it, kill it if it will not go."""
    for process in processes:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join(WORKER_STOP_TIMEOUT_S)
        if process.is_alive():
            log.warning("worker %s did not stop; killing it", process.name)
            process.kill()
            process.join()


def _worker(config: Config, number: int) -> None:
    """One worker process: its own event loop, pools and background tasks."""
    die_with_parent()
    setup_logging(config.log_level, config.log_format, worker=number)
    skip_unused_record_fields()
    try:
        _serve(config, announce=False)
    except HitaError as exc:
        print(f"hita: worker {number}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group
        pass
