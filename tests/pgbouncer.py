"""A PgBouncer (Debian's ``pgbouncer`` package) in front of the embedded
PostgreSQL, for tests: it listens on a loopback port, trusts the
``postgres`` user, and pools in ``transaction`` mode (a server connection is
lent for one transaction, or one statement outside one), as most PgBouncer
deployments do. It runs as the unprivileged user PostgreSQL runs as (it
refuses root), owned by PID like every server of the suite.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlsplit

from hita.embedded.postgres import PG_SUPERUSER, PG_SYSTEM_USER, pg_bin_dir
from hita.embedded.process import ServerProcess, ensure_traversable, service_user, wait_until

PGBOUNCER: Final = Path("/usr/sbin/pgbouncer")
HOST: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 30.0

CONFIG: Final = """\
[databases]
* = host={socket_dir} port={pg_port}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root}/userlist.txt
admin_users = {user}
pool_mode = {mode}
max_client_conn = 400
default_pool_size = 40
ignore_startup_parameters = extra_float_digits
"""


def available() -> bool:
    return PGBOUNCER.exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """``url_for(dsn)``: the same database as ``dsn`` (an embedded server's,
    on its unix socket), through this bouncer."""

    def __init__(self, root: Path, postgres_url: str, *, mode: str = "transaction") -> None:
        self.root = root
        self.port = _free_port()
        query = parse_qs(urlsplit(postgres_url).query)
        root.mkdir(parents=True, exist_ok=True)
        (root / "userlist.txt").write_text(f'"{PG_SUPERUSER}" ""\n')
        config = root / "pgbouncer.ini"
        config.write_text(
            CONFIG.format(
                socket_dir=query["host"][0],
                pg_port=query["port"][0],
                host=HOST,
                port=self.port,
                root=root,
                user=PG_SUPERUSER,
                mode=mode,
            )
        )
        user = service_user(PG_SYSTEM_USER)
        if user is not None:  # the unprivileged user reads its files
            ensure_traversable(root)
            for path in (root, root / "userlist.txt", config):
                shutil.chown(path, user.pw_uid, user.pw_gid)
        self.process = ServerProcess("pgbouncer", [str(PGBOUNCER), str(config)], root / "log", user)

    def url_for(self, postgres_url: str) -> str:
        database = urlsplit(postgres_url).path.lstrip("/")
        return f"postgresql://{PG_SUPERUSER}@{HOST}:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{PG_SUPERUSER}@{HOST}:{self.port}/pgbouncer"

    def start(self) -> None:
        self.process.start()
        wait_until(self._ready, timeout_s=START_TIMEOUT_S, what="PgBouncer")

    def _ready(self) -> bool:
        reason = self.process.exited_early()
        if reason is not None:
            raise RuntimeError(f"pgbouncer exited: {reason}")
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def transactions(self) -> int:
        """Transactions served so far, over every database (``SHOW STATS`` on
        the admin console, which speaks only the simple protocol: psql)."""
        shown = subprocess.run(
            [str(pg_bin_dir() / "psql"), self.admin_url, "-At", "-F", ",", "-c", "SHOW STATS"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        # database,total_xact_count,...: the first two columns
        return sum(int(line.split(",")[1]) for line in shown.splitlines() if line)

    def stop(self) -> None:
        self.process.stop()
