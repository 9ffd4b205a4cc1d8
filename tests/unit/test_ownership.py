"""The data folder's ownership lock applies only when an embedded server is started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hita.config import load_config
from hita.embedded import ServersInUse, embedded_dependencies
from hita.embedded.owner import Ownership

TOPOLOGIES = [
    {"REDIS_MODE": "sentinel", "REDIS_SENTINELS": "127.0.0.1:26379"},
    {"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": "127.0.0.1:7000"},
]


@pytest.fixture
def owned(tmp_path: Path) -> Iterator[Path]:
    """A folder whose servers another process owns: a second open file holds the
    flock, which the kernel treats exactly like another process's."""
    other = Ownership(tmp_path.resolve())
    assert other.claim()
    yield tmp_path
    other.release()


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_second_serve_with_its_own_servers_is_not_refused(
    owned: Path, topology: dict[str, str]
) -> None:
    config = load_config(
        {"HITA_DATA_DIR": str(owned), "DATABASE_URL": "postgresql://db/hita", **topology}
    )
    with embedded_dependencies(config, long_lived=True) as resolved:
        assert resolved == config  # nothing started, nothing filled in


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_second_serve_that_needs_the_embedded_postgresql_is_refused(
    owned: Path, topology: dict[str, str]
) -> None:
    config = load_config({"HITA_DATA_DIR": str(owned), **topology})
    with (
        pytest.raises(ServersInUse, match="belong to another HITA process"),
        embedded_dependencies(config, long_lived=True),
    ):
        pass
    assert not (owned / "postgres").exists()
