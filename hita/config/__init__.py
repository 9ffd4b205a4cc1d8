"""Typed configuration, read from an environment mapping and a profile.

Each setting is declared once, on the field it fills (``model``; how in
``declare``); the loader (``loader``), ``hita config`` and the documentation
tables (``reference``) are generated from those declarations. URL and TLS
policy and the redaction of passwords live in ``urls``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from hita.config.declare import ConfigError, Kind, Setting
from hita.config.derived import ENVIRONMENTS
from hita.config.loader import SETTINGS, Resolved, load_config, resolve
from hita.config.model import (
    REDIS_MODES,
    AuthConfig,
    BreakerConfig,
    CacheConfig,
    CacheTTLs,
    Config,
    DatabaseConfig,
    HttpConfig,
    LoginThrottleConfig,
    RedisConfig,
    RefreshConfig,
)
from hita.config.reference import settings_markdown, unknown_variables
from hita.config.urls import is_loopback, redact

# The source checkout, where tests and scripts keep their files; the service
# itself never reads it (an installed package has no checkout).
PROJECT_ROOT: Final = Path(__file__).resolve().parents[2]

__all__ = [
    "ENVIRONMENTS",
    "PROJECT_ROOT",
    "REDIS_MODES",
    "SETTINGS",
    "AuthConfig",
    "BreakerConfig",
    "CacheConfig",
    "CacheTTLs",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "HttpConfig",
    "Kind",
    "LoginThrottleConfig",
    "RedisConfig",
    "RefreshConfig",
    "Resolved",
    "Setting",
    "is_loopback",
    "load_config",
    "redact",
    "resolve",
    "settings_markdown",
    "unknown_variables",
]
