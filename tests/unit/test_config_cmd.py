"""``hita config``: a readable table with each value's source, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hita.cli.config_cmd import table
from hita.config import SETTINGS, load_config, redact


def config_lines(environ: dict[str, str]) -> list[str]:
    """What ``hita config`` prints (``main`` would also set up the process's logging)."""
    out = table(environ, load_config(environ))
    assert "Config(" not in out
    return out.splitlines()


def row(lines: list[str], name: str) -> list[str]:
    [line] = [line for line in lines if line.split()[:1] == [name]]
    return line.split()


def test_every_setting_has_a_row_with_its_source(tmp_path: Path) -> None:
    lines = config_lines({"HITA_DATA_DIR": str(tmp_path), "PORT": "9000", "JWT_SECRET": "j" * 40})
    assert lines[0] == "HITA configuration, profile development"
    for setting in SETTINGS:
        assert row(lines, setting.name)
    assert row(lines, "PORT") == ["PORT", "9000", "environment"]
    assert row(lines, "USER_STATS_TTL") == ["USER_STATS_TTL", "60", "profile"]
    assert row(lines, "USER_DETAILS_TTL") == ["USER_DETAILS_TTL", "180", "default"]
    assert max(len(line) for line in lines) <= 120
    assert "listens on:  http://127.0.0.1:9000" in lines
    assert f"database:    embedded PostgreSQL, data in {tmp_path / 'postgres'}" in lines


def test_secrets_and_passwords_are_masked() -> None:
    secret, password, db_password = "S" * 40, "redis-pw-123", "db-pw-456"
    lines = config_lines(
        {
            "JWT_SECRET": secret,
            "DATABASE_URL": f"postgresql://hita:{db_password}@db.internal:5432/hita",
            "REDIS_HOST": "cache",
            "REDIS_PASSWORD": password,
        },
    )
    text = "\n".join(lines)
    for hidden in (secret, password, db_password):
        assert hidden not in text
    assert row(lines, "JWT_SECRET") == ["JWT_SECRET", "(set,", "hidden)", "environment"]
    assert "database:    postgresql://hita:***@db.internal:5432/hita" in lines
    assert "redis:       redis://:***@cache:6379/0" in lines
    assert "tokens:      signed with JWT_SECRET" in lines


def test_without_jwt_secret_it_names_the_generated_one(tmp_path: Path) -> None:
    lines = config_lines({"HITA_DATA_DIR": str(tmp_path)})
    assert (
        f"tokens:      signed with generated, kept in {tmp_path / 'jwt-secret'} (mode 0600)"
        in lines
    )
    assert not (tmp_path / "jwt-secret").exists()  # showing the settings changes nothing


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:p@h/d", "postgresql://u:***@h/d"),
        ("redis://:p%40ss@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://u@/d?host=/run", "postgresql://u@/d?host=/run"),
        ("unix:///tmp/r.sock?db=0", "unix:///tmp/r.sock?db=0"),
        ("redis://app:pw@h:6379/0", "redis://app:***@h:6379/0"),
        (
            "postgresql://u@h/d?password=pw&sslmode=require",
            "postgresql://u@h/d?password=***&sslmode=require",
        ),
        ("postgresql://u:a@h/d?sslpassword=k", "postgresql://u:***@h/d?sslpassword=***"),
    ],
)
def test_one_redaction_for_urls_and_dsns(url: str, masked: str) -> None:
    assert redact(url) == masked


def test_cluster_and_sentinel_name_their_nodes_not_an_embedded_redis() -> None:
    lines = config_lines({"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": "10.0.0.1:7000"})
    assert "redis:       cluster 10.0.0.1:7000" in lines
