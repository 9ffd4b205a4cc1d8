"""The real entry point refusing to start: one line on stderr, no traceback.

Each case runs ``python -m hita serve`` in a subprocess, as an operator would,
and checks the exit code (2 for a configuration error, 1 for anything else),
that stderr is exactly one line, and that nothing was retried for a value
that cannot work.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.integration.test_entrypoint import data_dir, service_env
from tests.integration.test_health import closed_port

__all__ = ["data_dir"]  # the fixture, shared with test_entrypoint

pytestmark = pytest.mark.slow

FAIL_FAST_BUDGET_S: Final = 15.0  # generous: a subprocess start on a loaded machine


def serve(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hita", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, time.monotonic() - started


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [line], result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_in_use_is_one_line(
    data_dir: Path, taken_port: int, database_url: str, redis_url: str
) -> None:
    env = service_env(data_dir, taken_port, DATABASE_URL=database_url, REDIS_URL=redis_url)
    result, elapsed = serve(env)
    assert_one_line(
        result, 1, f"hita: cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    )
    assert elapsed < FAIL_FAST_BUDGET_S
    assert not (data_dir / "postgres").exists()  # nothing was started before the bind


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ({"PORT": "70000"}, "PORT must be at most 65535, not 70000"),
        (
            {"DB_POOL_MIN_SIZE": "30", "DB_POOL_MAX_SIZE": "20"},
            "DB_POOL_MIN_SIZE (30) must not exceed DB_POOL_MAX_SIZE (20)",
        ),
        (
            {"DATABASE_URL": "nonsense"},
            "DATABASE_URL must be a URL starting with postgresql://, postgres://",
        ),
        (
            {"DATABASE_URL": "postgresql://127.0.0.1:1/hita?sslmode=bogus"},
            "DATABASE_URL cannot be used: `sslmode` parameter must be one of: disable, allow,"
            " prefer, require, verify-ca, verify-full",
        ),
        (
            {"HOST": "0.0.0.0"},
            "HOST 0.0.0.0 is not a loopback address: set JWT_SECRET (32+ bytes) to serve"
            " beyond this machine",
        ),
    ],
    ids=[
        "port out of range",
        "pool sizes",
        "dsn that does not parse",
        "dsn asyncpg refuses",
        "public address without a secret",
    ],
)
def test_a_bad_setting_is_one_line_at_once(
    data_dir: Path, setting: dict[str, str], line: str
) -> None:
    env = service_env(data_dir, closed_port(), REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    env.update(setting)
    result, elapsed = serve(env)
    assert_one_line(result, 2, f"hita: configuration error: {line}")
    assert elapsed < FAIL_FAST_BUDGET_S  # no connection attempt was retried
    assert "attempt" not in result.stderr


def test_pending_migrations_without_auto_migrate_are_one_line(
    data_dir: Path, unmigrated_database: str, redis_url: str
) -> None:
    env = service_env(
        data_dir,
        closed_port(),
        DATABASE_URL=unmigrated_database,
        REDIS_URL=redis_url,
        DB_AUTO_MIGRATE="false",
        LOG_LEVEL="WARNING",
    )
    result, _ = serve(env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("hita: the database lacks ")
    assert line.endswith("and DB_AUTO_MIGRATE is off: run `hita migrate` first")
