"""Loading: the built-in defaults, then the profile, then the environment.

``load_config`` takes the environment as a mapping and reads nothing else but
the profile ``<HITA_ENV>.toml``: shipped in the package (``profiles/``), or
from the folder HITA_CONFIG_DIR names. Tests build whole ``Config`` objects
and compare them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from hita.config.declare import ConfigError, Parsed, Setting, build, settings_of
from hita.config.derived import CONFIG_DIR, HITA_ENV
from hita.config.model import Config

# Every environment variable HITA reads, in the order of the documentation tables.
SETTINGS: Final[tuple[Setting, ...]] = tuple(dict.fromkeys(settings_of(Config)))
SETTING_NAMES: Final = frozenset(s.name for s in SETTINGS)
_ENVIRONMENT_ONLY: Final = frozenset({HITA_ENV.name, CONFIG_DIR.name})  # they choose the profile


def profile_source(environ: Mapping[str, str], env: str) -> Traversable:
    """The profile file of ``env``: HITA_CONFIG_DIR's, else the package's own."""
    directory = CONFIG_DIR.parse(environ.get(CONFIG_DIR.name))
    if isinstance(directory, Path):
        return directory / f"{env}.toml"
    return resources.files(__package__).joinpath("profiles", f"{env}.toml")


def read_profile(source: Traversable) -> dict[str, str]:
    """A profile's settings as environment-style strings; unknown names refused."""
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"profile {source} not found (set HITA_CONFIG_DIR)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {source} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - SETTING_NAMES)
    if unknown:
        raise ConfigError(f"profile {source} sets unknown settings: {', '.join(unknown)}")
    fixed = sorted(set(data) & _ENVIRONMENT_ONLY)
    if fixed:
        raise ConfigError(f"profile {source} sets {', '.join(fixed)}: only the environment may")
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()}


@dataclass(frozen=True, slots=True)
class Resolved:
    """One setting's effective raw value and where it came from."""

    setting: Setting
    value: str | None
    source: str  # "environment", "profile" or "default"


def resolve(environ: Mapping[str, str]) -> tuple[str, list[Resolved]]:
    """The profile name, and every setting with its raw value and source, in the
    precedence ``load_config`` applies: default, then profile, then environment."""
    env = str(HITA_ENV.parse(environ.get(HITA_ENV.name) or None))
    profile = read_profile(profile_source(environ, env))
    rows = []
    for setting in SETTINGS:
        if setting.name in environ:
            rows.append(Resolved(setting, environ[setting.name], "environment"))
        elif setting.name in profile:
            rows.append(Resolved(setting, profile[setting.name], "profile"))
        else:
            rows.append(Resolved(setting, setting.default, "default"))
    return env, rows


def load_config(environ: Mapping[str, str]) -> Config:
    """The configuration from ``environ`` (usually ``os.environ``)."""
    _, rows = resolve(environ)
    parsed = Parsed({row.setting.name: row.setting.parse(row.value) for row in rows})
    config = build(Config, parsed)
    _check(config)
    return config


def _check(config: Config) -> None:
    """Rules that join several settings."""
    if config.is_production and config.needs_embedded():
        raise ConfigError("production needs DATABASE_URL and REDIS_URL (or REDIS_HOST)")
    low, high = config.database.pool_min_size, config.database.pool_max_size
    if low > high:
        raise ConfigError(f"DB_POOL_MIN_SIZE ({low}) must not exceed DB_POOL_MAX_SIZE ({high})")
