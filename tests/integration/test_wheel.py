"""The package installs anywhere: the wheel, built from this checkout, goes into a
fresh virtual environment outside it and runs there with nothing of the
checkout (profiles and migrations come from the package)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hita import __version__
from hita.config import PROJECT_ROOT
from tests.integration.test_entrypoint import wait_healthy
from tests.integration.test_health import closed_port

pytestmark = pytest.mark.slow

# Variables of this run that would point the installed hita at the checkout or
# at the suite's servers.
FOREIGN = ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL", "REDIS_URL", "REDIS_HOST", "REDIS_MODE")


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside the checkout, for the wheel, the venv and the data."""
    path = Path(tempfile.mkdtemp(prefix="hita-wheel-"))
    assert PROJECT_ROOT not in path.parents
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(argv: list[str | Path], cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN and not k.startswith("HITA_")}
    env |= {"HITA_DATA_DIR": str(cwd / "data"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def test_the_wheel_installs_and_serves_outside_the_checkout(outside: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    # Built from a copy of what the package is made of, so that no stale build/
    # of the checkout slips in; the dev extra brings setuptools, so the build
    # needs no isolated environment.
    source = outside / "source"
    shutil.copytree(
        PROJECT_ROOT / "hita", source / "hita", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "setup.cfg"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist", source], outside)
    [wheel] = (outside / "dist").glob("hita-*.whl")
    # The venv gets no pip of its own: this one installs into it (--python).
    run([sys.executable, "-m", "venv", "--without-pip", "venv"], outside)
    python = outside / "venv" / "bin" / "python"
    run([*pip, "--python", python, "install", "-q", f"{wheel}[embedded]"], outside)

    located = run([python, "-c", "import hita; print(hita.__file__)"], outside)
    assert Path(located.strip()).is_relative_to(outside / "venv")
    hita = outside / "venv" / "bin" / "hita"
    assert run([hita, "--version"], outside) == f"hita {__version__}\n"
    table = [line.split() for line in run([hita, "config"], outside).splitlines()]
    assert ["USER_STATS_TTL", "60", "profile"] in table  # the packaged development profile

    port = closed_port()
    env = {"PATH": os.environ["PATH"], "HITA_DATA_DIR": str(outside / "data"), "PORT": str(port)}
    with (outside / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            [hita, "serve"], cwd=outside, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        assert wait_healthy(serve, port)["status"] == "ok", (outside / "serve.log").read_text()
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
