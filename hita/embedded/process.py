"""A child server process that the caller owns by PID.

Children run in their own session (so a terminal's Ctrl-C reaches only HITA,
which then stops them in order) and get SIGTERM from the kernel if HITA dies
without cleaning up (PR_SET_PDEATHSIG), so no server outlives its owner.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Final

from hita.runtime import die_with_parent

log = logging.getLogger(__name__)

STOP_TIMEOUT_S: Final = 15.0


_die_with_parent = die_with_parent  # runs in a server child between fork and exec


def ensure_traversable(path: Path) -> None:
    """Let another user reach ``path``: add o+x to every ancestor lacking it.

    Needed when running as root, since PostgreSQL refuses to run as root and
    runs as an unprivileged user instead (as pgserver itself does). Only the
    search bit is added; no folder becomes listable.
    """
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def service_user(name: str) -> pwd.struct_passwd | None:
    """The unprivileged user servers run as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(  # noqa: S603 - a fixed command and our own user name
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


class ServerProcess:
    """One server process: start, pause (SIGSTOP), resume (SIGCONT), kill, stop."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, user: pwd.struct_passwd | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.user = user
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 - argv is ours, not user input
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - called before threads start
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            extra_groups=[] if self.user else None,
        )
        log.info("%s started, pid %d", self.name, self._proc.pid)

    def exited_early(self) -> str | None:
        """None while running; else the tail of its log, for the error message."""
        if self.running():
            return None
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        return " | ".join(tail) or "no output"

    def send(self, signum: int) -> None:
        if self.running():
            os.kill(self.pid, signum)

    def pause(self) -> None:
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.send(signal.SIGCONT)

    def kill(self) -> None:
        if self._proc is not None and self.running():
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._close_log()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask it to exit (a paused process is resumed first); kill it if it will not."""
        if self._proc is None:
            return
        if self.running():
            os.kill(self._proc.pid, signal.SIGCONT)
            os.kill(self._proc.pid, signum)
            try:
                self._proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", self.name, STOP_TIMEOUT_S)
                self.kill()
        log.info("%s stopped", self.name)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
