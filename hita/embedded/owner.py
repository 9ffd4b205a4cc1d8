"""Who owns the embedded servers of a data folder.

The process that starts the embedded PostgreSQL and Redis owns them: they are
its children and stop when it stops. It holds an exclusive ``flock`` on
``<data>/servers.lock`` for as long as it runs (the kernel releases it however
the process ends) and writes its pid and command there. Another process of
the same folder finds the lock taken: a short command (``hita migrate``,
``hita user create``, ...) may use the owner's servers for its few seconds,
but a second ``hita serve`` refuses with one line, since its servers would
vanish under it whenever the first one stops.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO, Final

from hita.errors import HitaError

LOCK_FILE: Final = "servers.lock"


class ServersInUse(HitaError):
    """The embedded servers of this data folder belong to another HITA process."""


class Ownership:
    """``claim()`` is True when this process now owns the folder's servers."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._file: IO[str] | None = None

    def claim(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n{' '.join(['hita', *sys.argv[1:]])}\n")
        handle.flush()
        self._file = handle
        return True

    def owner(self) -> str:
        """``pid N, `command```, as the owner wrote it."""
        try:
            pid, command = [*self.path.read_text().splitlines(), "", ""][:2]
        except OSError:
            return "unknown"
        return f"pid {pid}, `{command}`" if command else f"pid {pid}"

    def refuse(self) -> ServersInUse:
        return ServersInUse(
            f"the embedded PostgreSQL and Redis of {self.path.parent} belong to another HITA"
            f" process ({self.owner()}) and stop with it: stop that one first, or give this"
            " one its own HITA_DATA_DIR"
        )

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None
