"""The real entry point in a subprocess: what `make run` does on a fresh machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hita.embedded.owner import Ownership
from tests.conftest import TEST_ROOT
from tests.integration.test_health import closed_port

pytestmark = pytest.mark.slow

START_BUDGET_S = 60.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="e", dir=TEST_ROOT))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def service_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "HITA_ENV")
    }
    env.update(
        HITA_ENV="development",
        HITA_DATA_DIR=str(data_dir),
        PORT=str(port),
        WARMUP_TIMEOUT_S="0",
        **extra,
    )
    return env


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (checked, never killed)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if str(path) in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


def get_health(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1.0/health", timeout=2) as r:
            body: dict[str, object] = json.loads(r.read())
            return body
    except (urllib.error.URLError, OSError):
        return None


def post_login(port: int, username: str, password: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1.0/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_serve_starts_embedded_servers_and_sigint_leaves_nothing_behind(data_dir: Path) -> None:
    port = closed_port()
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hita", "serve"],
            env=service_env(data_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()
        health = None
        while time.monotonic() - started < START_BUDGET_S and proc.poll() is None:
            health = get_health(port)
            if health is not None:
                break
            time.sleep(0.2)
        assert health is not None, "no answer from /v1.0/health within 60 s"
        assert health["database"] == {"status": "ok"}
        assert health["cache"] == {"status": "ok"}
        assert any("postgres" in p for p in processes_using(data_dir))
        logins = (data_dir / "demo-logins.txt").read_text()
        password = logins.split("password: ")[1].split()[0]
        assert post_login(port, "demo.admin", password) == 200
        assert post_login(port, "demo.admin", "not the password") == 401
        assert any("redis-server" in p for p in processes_using(data_dir))

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log_path.read_text()
    assert "Traceback" not in output, output
    secret = data_dir / "jwt-secret"  # generated on first start, private to this folder
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) >= 64
    assert "Loaded 303 demo users (300 guests and staff, and the demo logins)" in output
    assert "demo.superadmin" in output
    assert processes_using(data_dir) == []


def test_unreachable_database_fails_fast_with_one_clear_line(data_dir: Path) -> None:
    env = service_env(
        data_dir,
        closed_port(),
        DATABASE_URL=f"postgresql://hita@127.0.0.1:{closed_port()}/hita",
        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hita", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 20
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("hita: cannot connect to PostgreSQL at 127.0.0.1:"), result.stderr
    assert "Traceback" not in result.stderr


def start_serve(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hita", "serve"],
            env=service_env(data_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> dict[str, object]:
    started = time.monotonic()
    while time.monotonic() - started < START_BUDGET_S and proc.poll() is None:
        health = get_health(port)
        if health is not None:
            return health
        time.sleep(0.2)
    raise AssertionError(f"no answer from /v1.0/health within {START_BUDGET_S:.0f} s")


def test_a_second_serve_in_one_folder_refuses_and_the_first_keeps_its_servers(
    data_dir: Path,
) -> None:
    port = closed_port()
    first = start_serve(data_dir, port, data_dir / "first.log")
    try:
        assert wait_healthy(first, port)["status"] == "ok"
        second = subprocess.run(
            [sys.executable, "-m", "hita", "serve"],
            env=service_env(data_dir, closed_port()),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1, second.stderr
        assert "Traceback" not in second.stderr
        [line] = second.stderr.splitlines()
        assert line.startswith(f"hita: the embedded PostgreSQL and Redis of {data_dir} belong")
        assert f"(pid {first.pid}, `hita serve`)" in line
        # A short command may still use the first one's servers.
        migrate = subprocess.run(
            [sys.executable, "-m", "hita", "migrate"],
            env=service_env(data_dir, closed_port()),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert migrate.stdout.strip() == "database is up to date"
        assert get_health(port) == {
            "success": True,
            "status": "ok",
            "database": {"status": "ok"},
            "cache": {"status": "ok"},
            "notifications": {"status": "ok"},
        }
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert processes_using(data_dir) == []


def test_a_serve_that_starts_no_embedded_server_ignores_the_folders_owner(
    data_dir: Path, database_url: str
) -> None:
    """A second serve from the same folder with DATABASE_URL set and Redis through
    sentinels starts no embedded server, so the folder's owner does not refuse it
    (here no sentinel answers: it serves from PostgreSQL, degraded)."""
    owner = Ownership(data_dir)  # the first serve's lock, as another process holds it
    assert owner.claim()
    port = closed_port()
    env = service_env(
        data_dir,
        port,
        DATABASE_URL=database_url,
        REDIS_MODE="sentinel",
        REDIS_SENTINELS=f"127.0.0.1:{closed_port()}",
    )
    with (data_dir / "second.log").open("wb") as log:
        second = subprocess.Popen(
            [sys.executable, "-m", "hita", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        health = wait_healthy(second, port)
        assert (health["status"], health["database"]) == ("degraded", {"status": "ok"})
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=30) == 0
    finally:
        owner.release()
        if second.poll() is None:
            second.kill()
            second.wait()
    assert "belong to another HITA process" not in (data_dir / "second.log").read_text()
    assert not (data_dir / "postgres").exists()
