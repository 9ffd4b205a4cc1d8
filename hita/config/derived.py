"""Settings that are not one field each, and the checks of single values.

Some variables together make one field: the Redis URL (REDIS_URL, or
REDIS_HOST/PORT/DB/PASSWORD), the nodes of a cluster or of the sentinels, the
JWT secret with its policy. They are declared here with the function that
builds the field; ``hita.config.model`` names them in its ``derived`` fields."""

from __future__ import annotations

import re
from typing import Final

from hita import constants as c
from hita.config.declare import ConfigError, Kind, Parsed, Setting
from hita.config.urls import host_url, is_loopback, nodes_check, redis_url_check, with_password

ENVIRONMENTS: Final = ("development", "production", "test")
_KEY_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{0,64}")


def key_prefix_check(name: str, prefix: str) -> str:
    """A prefix is part of every key and every SCAN pattern: no glob or hash-tag characters."""
    if not _KEY_PREFIX_RE.fullmatch(prefix):
        raise ConfigError(f"{name} may hold only letters, digits and _ . : -")
    return prefix


def address_check(name: str, host: str) -> str:
    if not host.strip():
        raise ConfigError(f"{name} must name an address to bind, such as 127.0.0.1")
    return host.strip()


def _jwt_secret_length(name: str, secret: str) -> str:
    if len(secret.encode()) < c.JWT_MIN_SECRET_BYTES:
        raise ConfigError(f"{name} must be at least {c.JWT_MIN_SECRET_BYTES} bytes")
    return secret


# Settings that feed a derived field rather than one field of their own.
HITA_ENV: Final = Setting(
    "HITA_ENV",
    "development",
    "the profile, whose file sets defaults of its own",
    Kind.CHOICE,
    choices=ENVIRONMENTS,
)
CONFIG_DIR: Final = Setting(
    "HITA_CONFIG_DIR",
    None,
    "folder of the profile files (default: those in the package)",
    Kind.PATH,
)
REDIS_URL: Final = Setting(
    "REDIS_URL",
    None,
    "redis://[user:password@]host..., rediss:// (certificate checked; CA with"
    " ?ssl_ca_certs=) or unix:// URL; wins over REDIS_HOST",
    Kind.URL,
    check=redis_url_check,
)
REDIS_HOST: Final = Setting(
    "REDIS_HOST", None, "Redis host; unset with REDIS_URL unset: start the embedded Redis"
)
REDIS_PORT: Final = Setting(
    "REDIS_PORT", "6379", "Redis port (with REDIS_HOST)", Kind.INTEGER, 1, c.MAX_PORT
)
REDIS_DB: Final = Setting(
    "REDIS_DB", "0", "Redis database number (with REDIS_HOST)", Kind.INTEGER, 0
)
REDIS_PASSWORD: Final = Setting(
    "REDIS_PASSWORD",
    None,
    "Redis password: with REDIS_HOST, or added to a REDIS_URL that has none"
    " (one that has another is refused); also cluster and sentinel",
    Kind.SECRET,
)
REDIS_CLUSTER_NODES: Final = Setting(
    "REDIS_CLUSTER_NODES",
    None,
    "cluster mode: host:port,... of some cluster nodes",
    check=nodes_check,
)
REDIS_SENTINELS: Final = Setting(
    "REDIS_SENTINELS", None, "sentinel mode: host:port,... of the sentinels", check=nodes_check
)
STATS_REFRESH_INTERVAL: Final = Setting(
    "STATS_REFRESH_INTERVAL_S",
    None,
    "refresh interval, s; unset: 80% of the shortest stats TTL",
    Kind.NUMBER,
    0.1,
)
JWT_SECRET: Final = Setting(
    "JWT_SECRET",
    None,
    "HS256 signing secret, 32+ bytes; required in production and on a non-loopback HOST"
    " (unset: a random one kept in HITA_DATA_DIR/jwt-secret)",
    Kind.SECRET,
    check=_jwt_secret_length,
)


def redis_url(v: Parsed) -> str | None:
    """REDIS_URL wins; else REDIS_HOST/PORT/DB/PASSWORD as in the seed; else None
    (the embedded Redis). REDIS_PASSWORD fills in a REDIS_URL that has none."""
    if v["REDIS_MODE"] != "standalone":
        return None
    password = v.optional("REDIS_PASSWORD")
    given = v.optional("REDIS_URL")
    if given is not None:
        return given if password is None else with_password(given, password)
    host = v.optional("REDIS_HOST")
    if host is None:
        return None
    return host_url(host, v.integer("REDIS_PORT"), v.integer("REDIS_DB"), password)


def redis_nodes(v: Parsed) -> tuple[tuple[str, int], ...]:
    """Cluster: some nodes to discover the rest from; sentinel: the sentinels."""
    mode = v["REDIS_MODE"]
    name = {"cluster": "REDIS_CLUSTER_NODES", "sentinel": "REDIS_SENTINELS"}.get(str(mode))
    if name is None:
        return ()
    nodes = v[name]
    if nodes is None:
        raise ConfigError(f"REDIS_MODE={mode} needs {name}")
    assert isinstance(nodes, tuple)
    return nodes


def redis_password(v: Parsed) -> str | None:
    """Cluster and sentinel connect with it; a standalone URL carries it."""
    return None if v["REDIS_MODE"] == "standalone" else v.optional("REDIS_PASSWORD")


def jwt_secret(v: Parsed) -> str:
    """Empty when JWT_SECRET is unset, which only a non-production loopback run may
    do: ``hita.devsecret`` then supplies the data folder's own random secret."""
    secret = v.optional("JWT_SECRET")
    if secret is None and v["HITA_ENV"] == "production":
        raise ConfigError("JWT_SECRET must be set to a real secret in production")
    host = v.text("HOST")
    if secret is None and not is_loopback(host):
        raise ConfigError(
            f"HOST {host} is not a loopback address: set JWT_SECRET"
            f" ({c.JWT_MIN_SECRET_BYTES}+ bytes) to serve beyond this machine"
        )
    return secret or ""


def refresh_interval(v: Parsed) -> float:
    given = v["STATS_REFRESH_INTERVAL_S"]
    if isinstance(given, float):
        return given
    return 0.8 * min(v.integer("USER_STATS_TTL"), v.integer("DASHBOARD_STATS_TTL"))


def environment(v: Parsed) -> str:
    return v.text("HITA_ENV")
