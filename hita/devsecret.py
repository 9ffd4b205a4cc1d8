"""The token-signing secret of a run without ``JWT_SECRET``: random, per data folder.

Outside production, and only while the service binds a loopback address (the
configuration refuses anything else without ``JWT_SECRET``), the secret is
generated on first start and kept in ``<HITA_DATA_DIR>/jwt-secret`` (mode
0600), so tokens survive a restart and no two checkouts share one. Nothing in
the source can sign a token the service accepts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from pathlib import Path
from typing import Final

from hita.config import Config, ConfigError
from hita.constants import JWT_MIN_SECRET_BYTES

log = logging.getLogger(__name__)

SECRET_FILE: Final = "jwt-secret"  # noqa: S105 - a file name, not a secret
GENERATED_SECRET_BYTES: Final = 48  # 64 characters of URL-safe base64


def secret_path(config: Config) -> Path:
    return config.data_dir / SECRET_FILE


def _create(path: Path) -> None:
    """Write a new secret, unless another process wrote one first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(GENERATED_SECRET_BYTES) + "\n")
    log.debug("generated a token-signing secret in %s", path)


def with_jwt_secret(config: Config) -> Config:
    """``config`` with its signing secret: ``JWT_SECRET`` when set, else the data
    folder's own, created on first use."""
    if config.auth.jwt_secret:
        return config
    path = secret_path(config)
    if not path.exists():
        _create(path)
    secret = path.read_text().strip()
    if len(secret.encode()) < JWT_MIN_SECRET_BYTES:
        raise ConfigError(f"{path} holds no usable secret: remove it to get a new one")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} may be read by others: chmod 600 it, or remove it")
    return dataclasses.replace(config, auth=dataclasses.replace(config.auth, jwt_secret=secret))
