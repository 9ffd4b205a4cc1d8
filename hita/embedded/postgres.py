"""A private PostgreSQL 16 from the binaries the ``pgserver`` package ships.

We use pgserver's binaries but run ``postgres`` ourselves as a child process
(not daemonised through ``pg_ctl``), so its PID is ours to stop, pause or kill,
and it listens only on a unix socket: no port to collide with.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from hita.embedded.process import (
    ServerProcess,
    ensure_traversable,
    service_user,
    wait_until,
)

log = logging.getLogger(__name__)

PG_SYSTEM_USER: Final = "pgserver"  # the user pgserver itself runs PostgreSQL as under root
PG_PORT: Final = 5432  # only names the socket file; nothing listens on TCP
PG_SUPERUSER: Final = "postgres"
START_TIMEOUT_S: Final = 60.0
_DB_NAME_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MAX_SOCKET_PATH: Final = 100  # sun_path is 108 bytes, less ".s.PGSQL.5432"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pg_bin_dir() -> Path:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded PostgreSQL needs the 'pgserver' package (extra 'embedded')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def short_socket_dir(preferred: Path, prefix: str) -> Path:
    """``preferred`` unless its socket path would be too long for AF_UNIX."""
    if len(str(preferred.resolve())) + 20 <= _MAX_SOCKET_PATH:
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred.resolve()
    return Path(tempfile.mkdtemp(prefix=prefix))


class EmbeddedPostgres:
    """``start()`` initialises the data folder once, starts the server and creates
    ``database``; ``url`` is then an asyncpg DSN; ``stop()`` shuts it down."""

    def __init__(
        self,
        root: Path,
        database: str = "hita",
        *,
        durable: bool = True,
        max_connections: int | None = None,
    ) -> None:
        self.root = root.resolve()
        self.max_connections = max_connections  # None: PostgreSQL's default (100)
        self.data = self.root / "data"
        self.database = database
        self.durable = durable
        self.bin = pg_bin_dir()
        self.user = service_user(PG_SYSTEM_USER)
        self.socket_dir = short_socket_dir(self.root / "run", "hita-pg-")
        self.process = ServerProcess(
            "postgres", self._argv(), self.root / "postgres.log", self.user
        )
        self.attached = False  # True when another HITA process already runs this server

    def url_for(self, database: str) -> str:
        return f"postgresql://{PG_SUPERUSER}@/{database}?host={self.socket_dir}&port={PG_PORT}"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def _argv(self) -> list[str]:
        argv = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(PG_PORT),
            "-k",
            str(self.socket_dir),
            "-c",
            "listen_addresses=",
            "-c",
            "unix_socket_permissions=0770",
        ]
        if self.max_connections is not None:
            argv += ["-c", f"max_connections={self.max_connections}"]
        if not self.durable:  # test servers: speed over crash safety
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        return argv

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _run(self, tool: str, *args: str) -> str:
        result = subprocess.run(  # noqa: S603 - fixed binaries and our arguments
            [str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            text=True,
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            extra_groups=[] if self.user else None,
            timeout=START_TIMEOUT_S,
        )
        return result.stdout

    def _initdb(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        log.info("initialising PostgreSQL data in %s", self.data)
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._own(self.data)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _postmaster_ready(self) -> bool:
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and _alive(int(lines[0]))

    def _ready(self) -> bool:
        reason = self.process.exited_early()
        if reason is not None:
            raise RuntimeError(f"PostgreSQL exited during start-up: {reason}")
        return self._postmaster_ready()

    def _psql(self, sql: str) -> str:
        return self._run(
            "psql",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.url_for("postgres"),
            "-c",
            sql,
        )

    def create_database(self, name: str, *, drop_first: bool = False) -> None:
        if not _DB_NAME_RE.fullmatch(name):  # names are ours, and checked before quoting
            raise ValueError(f"not a plain database name: {name!r}")
        if drop_first:
            self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = self._psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 - checked above
        ).strip()
        if not exists:
            self._psql(f'CREATE DATABASE "{name}"')

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            ensure_traversable(self.root)
            ensure_traversable(self.bin)
            self._own(self.socket_dir)
        self._initdb()
        if self._postmaster_ready() and (self.socket_dir / f".s.PGSQL.{PG_PORT}").exists():
            log.info("PostgreSQL already running in %s; using it", self.data)
            self.attached = True
            return
        self.process.start()
        wait_until(self._ready, timeout_s=START_TIMEOUT_S, what="PostgreSQL")
        self.create_database(self.database)
        log.info("PostgreSQL ready at %s", self.socket_dir)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back, disconnect, exit.
        if not self.attached:
            self.process.stop(signal.SIGINT)
