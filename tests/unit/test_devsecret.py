"""The signing secret of a run without JWT_SECRET: random, per data folder, 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hita.config import ConfigError, load_config
from hita.devsecret import SECRET_FILE, with_jwt_secret


def test_a_secret_is_generated_once_per_data_folder(tmp_path: Path) -> None:
    first = with_jwt_secret(load_config({"HITA_DATA_DIR": str(tmp_path / "a")}))
    again = with_jwt_secret(load_config({"HITA_DATA_DIR": str(tmp_path / "a")}))
    other = with_jwt_secret(load_config({"HITA_DATA_DIR": str(tmp_path / "b")}))
    assert len(first.auth.jwt_secret) >= 64
    assert first.auth.jwt_secret == again.auth.jwt_secret
    assert other.auth.jwt_secret != first.auth.jwt_secret
    path = tmp_path / "a" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first.auth.jwt_secret


def test_an_explicit_secret_wins_and_writes_nothing(tmp_path: Path) -> None:
    config = with_jwt_secret(load_config({"HITA_DATA_DIR": str(tmp_path), "JWT_SECRET": "e" * 40}))
    assert config.auth.jwt_secret == "e" * 40
    assert not (tmp_path / SECRET_FILE).exists()


def test_a_secret_file_others_may_read_is_refused(tmp_path: Path) -> None:
    config = load_config({"HITA_DATA_DIR": str(tmp_path)})
    with_jwt_secret(config)
    (tmp_path / SECRET_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        with_jwt_secret(config)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "hotel.example"])
def test_a_non_loopback_address_needs_an_explicit_secret(host: str) -> None:
    with pytest.raises(ConfigError, match=f"HOST {host} is not a loopback address"):
        load_config({"HOST": host})
    assert load_config({"HOST": host, "JWT_SECRET": "x" * 32}).http.host == host
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_config({"HOST": host, "JWT_SECRET": "short"})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_address_may_use_the_generated_secret(host: str) -> None:
    assert load_config({"HOST": host}).auth.jwt_secret == ""
