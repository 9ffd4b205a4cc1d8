"""Typed configuration, read from an environment mapping and a profile.

Precedence, lowest first: the built-in defaults of ``SETTINGS``, the profile
``config/<HITA_ENV>.toml`` (whose keys are the same names), the environment.
``load_config`` takes the mapping as an argument and reads nothing else, so
tests build whole ``Config`` objects and compare them.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from hita import constants as c

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
ENVIRONMENTS: Final = ("development", "production", "test")
_KEY_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{0,64}")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str | None
    help: str


def _s(name: str, default: object, help_: str) -> Setting:
    return Setting(name, None if default is None else str(default), help_)


# Every environment variable HITA reads, with its default. README's table is
# generated from this list (`hita config --markdown`) and a test keeps them equal.
SETTINGS: Final[tuple[Setting, ...]] = (
    _s("HITA_ENV", "development", "profile: development, production or test"),
    _s("HITA_CONFIG_DIR", None, "folder of the profile files (default: the checkout's config/)"),
    _s("HITA_DATA_DIR", ".hita", "where the embedded PostgreSQL and Redis keep their data"),
    _s("HOST", c.DEFAULT_HOST, "address the HTTP server binds"),
    _s("PORT", c.DEFAULT_PORT, "port the HTTP server binds"),
    _s("CLIENT_MAX_SIZE", c.CLIENT_MAX_SIZE_BYTES, "largest request body accepted, bytes"),
    _s(
        "OVERLOAD_QUEUE_DELAY_MS",
        c.OVERLOAD_QUEUE_DELAY_MS,
        "queueing delay in the instance (docs/load.md) past which requests are refused"
        " 503 overloaded, ms (0: never)",
    ),
    _s("OVERLOAD_RETRY_AFTER_S", c.OVERLOAD_RETRY_AFTER_S, "Retry-After of a 503 overloaded, s"),
    _s(
        "OVERLOAD_PACE_MS",
        c.OVERLOAD_PACE_MS,
        "after a 503 overloaded, wait before reading that connection's next request, ms",
    ),
    _s("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    _s("LOG_FORMAT", "text", "text (readable lines) or json (one object per line)"),
    _s("ACCESS_LOG", "true", "one INFO line per request (logger hita.access)"),
    _s("DATABASE_URL", None, "PostgreSQL DSN; unset: start the embedded PostgreSQL"),
    _s("DB_POOL_MIN_SIZE", c.DB_POOL_MIN_SIZE, "asyncpg pool: connections kept open"),
    _s("DB_POOL_MAX_SIZE", c.DB_POOL_MAX_SIZE, "asyncpg pool: most connections"),
    _s("DB_CONNECT_TIMEOUT_S", c.DB_CONNECT_TIMEOUT_S, "seconds to open a connection"),
    _s("DB_COMMAND_TIMEOUT_S", c.DB_COMMAND_TIMEOUT_S, "seconds a statement may run"),
    _s("DB_ACQUIRE_TIMEOUT_S", c.DB_ACQUIRE_TIMEOUT_S, "seconds to wait for a free connection"),
    _s("DB_STARTUP_ATTEMPTS", c.DB_STARTUP_ATTEMPTS, "connection attempts at start-up"),
    _s("DB_QUEUE_MAX", c.DB_QUEUE_MAX, "requests that may wait for a connection; beyond: 503"),
    _s(
        "DB_QUEUE_TIMEOUT_MS",
        c.DB_QUEUE_TIMEOUT_MS,
        "longest a request waits for connections, in all, before 503 overloaded, ms",
    ),
    _s("DB_AUTO_MIGRATE", "true", "apply pending migrations when the service starts"),
    _s(
        "REDIS_URL",
        None,
        "redis://[user:password@]host..., rediss:// (certificate checked; CA with"
        " ?ssl_ca_certs=) or unix:// URL; wins over REDIS_HOST",
    ),
    _s("REDIS_HOST", None, "Redis host; unset with REDIS_URL unset: start the embedded Redis"),
    _s("REDIS_PORT", 6379, "Redis port (with REDIS_HOST)"),
    _s("REDIS_DB", 0, "Redis database number (with REDIS_HOST)"),
    _s(
        "REDIS_PASSWORD",
        None,
        "Redis password: with REDIS_HOST, or added to a REDIS_URL that has none"
        " (one that has another is refused); also cluster and sentinel",
    ),
    _s("REDIS_MODE", "standalone", "standalone (one server), cluster or sentinel"),
    _s("REDIS_CLUSTER_NODES", None, "cluster mode: host:port,... of some cluster nodes"),
    _s("REDIS_SENTINELS", None, "sentinel mode: host:port,... of the sentinels"),
    _s("REDIS_SENTINEL_MASTER", "mymaster", "sentinel mode: the master's name"),
    _s("REDIS_MAX_CONNECTIONS", c.REDIS_MAX_CONNECTIONS, "Redis pool size"),
    _s("REDIS_SOCKET_TIMEOUT_MS", c.REDIS_SOCKET_TIMEOUT_MS, "per-command Redis timeout, ms"),
    _s("REDIS_CONNECT_TIMEOUT_MS", c.REDIS_CONNECT_TIMEOUT_MS, "Redis connect timeout, ms"),
    _s("REDIS_POOL_TIMEOUT_MS", c.REDIS_POOL_TIMEOUT_MS, "wait for a free Redis connection, ms"),
    _s("CACHE_KEY_PREFIX", "", "prefix of every cache key, for a shared Redis"),
    _s("CACHE_BREAKER_FAILURES", c.BREAKER_FAILURE_THRESHOLD, "consecutive failures that open it"),
    _s("CACHE_BREAKER_OPEN_S", c.BREAKER_OPEN_S, "seconds the breaker stays open"),
    _s("CACHE_LEASE_TTL_MS", c.LEASE_TTL_MS, "how long a loader holds a key's lease, ms"),
    _s("CACHE_LEASE_WAIT_MS", c.LEASE_WAIT_MS, "how long a reader waits for another loader, ms"),
    _s("CACHE_XFETCH_BETA", c.XFETCH_BETA, "early recomputation eagerness (0 disables)"),
    _s("CACHE_PENDING_MAX_USERS", c.PENDING_INVALIDATIONS_MAX_USERS, "pending user ids kept"),
    _s(
        "CACHE_SCAN_BUDGET_MS", c.CACHE_SCAN_BUDGET_MS, "time for counting keys; past it, estimates"
    ),
    _s(
        "CACHE_INVALIDATION_BUDGET_MS",
        c.INVALIDATION_BUDGET_MS,
        "how long a write retries its invalidation in Redis before answering, ms",
    ),
    _s(
        "CACHE_OUTBOX_BARRIER_MS",
        c.OUTBOX_BARRIER_MS,
        "then how long it waits for PostgreSQL to deliver it to every instance, ms",
    ),
    _s("CACHE_OUTBOX_SWEEP_MS", c.OUTBOX_SWEEP_MS, "how often the outbox is swept, ms"),
    _s("CACHE_L1_ENABLED", "true", "an in-process near cache kept coherent by Redis tracking"),
    _s("CACHE_L1_MAX_ENTRIES", c.L1_MAX_ENTRIES, "near cache: most entries per cache type"),
    _s(
        "CACHE_L1_MAX_BYTES",
        c.L1_MAX_BYTES,
        "near cache: most bytes of stored entries per cache type",
    ),
    _s("USER_STATS_TTL", c.USER_STATS_TTL_S, "user statistics TTL, seconds"),
    _s("USER_LIST_TTL", c.USER_LIST_TTL_S, "user list TTL, seconds"),
    _s("USER_DETAILS_TTL", c.USER_DETAILS_TTL_S, "user details TTL, seconds"),
    _s("DASHBOARD_STATS_TTL", c.DASHBOARD_STATS_TTL_S, "dashboard statistics TTL, seconds"),
    _s("SUPERADMIN_USER_LIST_TTL", c.SUPERADMIN_USER_LIST_TTL_S, "superadmin list TTL, seconds"),
    _s("NEGATIVE_CACHE_TTL", c.NEGATIVE_CACHE_TTL_S, "TTL of a cached 'not found', seconds"),
    _s("STATS_REFRESH_ENABLED", "true", "run the scheduled statistics refresh"),
    _s("STATS_REFRESH_INTERVAL_S", None, "refresh interval; unset: 80% of the shortest stats TTL"),
    _s("STATS_REFRESH_JITTER", 0.1, "random fraction added to or taken from each interval"),
    _s("WARMUP_ON_START", "true", "warm the essential caches when the service starts"),
    _s("WARMUP_TIMEOUT_S", 5.0, "how long start-up waits for the cache warm-up, seconds"),
    _s(
        "JWT_SECRET",
        None,
        "HS256 signing secret, 32+ bytes; required in production and on a non-loopback HOST"
        " (unset: a random one kept in HITA_DATA_DIR/jwt-secret)",
    ),
    _s("JWT_TTL_S", c.JWT_TTL_S, "access token lifetime, seconds"),
    _s("LOGIN_THROTTLE_ENABLED", "true", "answer 429 to logins after too many failures"),
    _s(
        "LOGIN_MAX_FAILURES_PER_USER",
        c.LOGIN_MAX_FAILURES_PER_USER,
        "failed logins per username in a window before 429",
    ),
    _s(
        "LOGIN_MAX_FAILURES_PER_ADDRESS",
        c.LOGIN_MAX_FAILURES_PER_ADDRESS,
        "failed logins per client address in a window before 429",
    ),
    _s("LOGIN_THROTTLE_WINDOW_S", c.LOGIN_THROTTLE_WINDOW_S, "throttling window, seconds"),
    _s(
        "LOGIN_THROTTLE_LOCAL_MAX_KEYS",
        c.LOGIN_THROTTLE_LOCAL_MAX_KEYS,
        "counters kept in process while Redis is away",
    ),
    _s(
        "TRUST_X_FORWARDED_FOR",
        "false",
        "client address from the last X-Forwarded-For entry (behind one reverse proxy)",
    ),
    _s("ARGON2_TIME_COST", 3, "argon2id passes"),
    _s("ARGON2_MEMORY_KIB", 65536, "argon2id memory, KiB"),
    _s("ARGON2_PARALLELISM", 4, "argon2id lanes"),
)
_SETTING_NAMES: Final = frozenset(s.name for s in SETTINGS)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str
    port: int
    client_max_size: int
    queue_delay_s: float  # admission's target; 0: admit everything
    retry_after_s: int
    overload_pace_s: float
    access_log: bool = True


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str | None = field(repr=False)  # None: the embedded server supplies it
    pool_min_size: int
    pool_max_size: int
    connect_timeout_s: float
    command_timeout_s: float
    acquire_timeout_s: float
    startup_attempts: int
    auto_migrate: bool
    queue_max: int
    queue_timeout_s: float


REDIS_MODES: Final = ("standalone", "cluster", "sentinel")


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str | None = field(repr=False)  # None: the embedded server supplies it
    max_connections: int
    socket_timeout_s: float
    connect_timeout_s: float
    pool_timeout_s: float
    key_prefix: str
    mode: str = "standalone"
    # cluster: some cluster nodes to discover the rest from; sentinel: the sentinels
    nodes: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = "mymaster"
    password: str | None = field(default=None, repr=False)  # cluster and sentinel

    @property
    def needs_embedded(self) -> bool:
        """A single server with no URL: the embedded Redis supplies it."""
        return self.mode == "standalone" and self.url is None


@dataclass(frozen=True, slots=True)
class CacheTTLs:
    user_stats: int
    user_list: int
    user_details: int
    dashboard_stats: int
    superadmin_user_list: int
    negative: int

    def for_type(self, cache_type: str) -> int:
        ttl = getattr(self, cache_type, None)
        if not isinstance(ttl, int):
            raise KeyError(cache_type)
        return ttl


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int
    open_s: float


@dataclass(frozen=True, slots=True)
class CacheConfig:
    ttls: CacheTTLs
    breaker: BreakerConfig
    lease_ttl_ms: int
    lease_wait_ms: int
    xfetch_beta: float
    pending_max_users: int
    scan_budget_s: float
    invalidation_budget_s: float
    outbox_barrier_s: float
    outbox_sweep_s: float
    l1_enabled: bool
    l1_max_entries: int
    l1_max_bytes: int


@dataclass(frozen=True, slots=True)
class RefreshConfig:
    enabled: bool
    interval_s: float
    jitter: float
    warmup_on_start: bool
    warmup_timeout_s: float


@dataclass(frozen=True, slots=True)
class AuthConfig:
    jwt_secret: str = field(repr=False)
    jwt_ttl_s: int
    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int


@dataclass(frozen=True, slots=True)
class LoginThrottleConfig:
    enabled: bool
    max_failures_per_user: int
    max_failures_per_address: int
    window_s: int
    local_max_keys: int
    trust_forwarded_for: bool


@dataclass(frozen=True, slots=True)
class Config:
    env: str
    data_dir: Path
    log_level: str
    log_format: str
    http: HttpConfig
    database: DatabaseConfig
    redis: RedisConfig
    cache: CacheConfig
    refresh: RefreshConfig
    auth: AuthConfig
    login_throttle: LoginThrottleConfig

    @property
    def is_production(self) -> bool:
        return self.env == "production"


class _Values:
    """Resolved raw values with typed, validating accessors."""

    def __init__(self, raw: Mapping[str, str | None]) -> None:
        self._raw = raw

    def optional(self, name: str) -> str | None:
        value = self._raw.get(name)
        return value if value not in (None, "") else None

    def text(self, name: str) -> str:
        value = self._raw.get(name)
        if value is None:
            raise ConfigError(f"{name} is required")
        return value

    def integer(self, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
        text = self.text(name)
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, not {text!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, not {value}")
        return value

    def number(self, name: str, *, minimum: float = 0.0) -> float:
        text = self.text(name)
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {text!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}")
        return value

    def flag(self, name: str) -> bool:
        text = self.text(name).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {text!r}")

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.text(name).strip()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value


def config_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HITA_CONFIG_DIR") or PROJECT_ROOT / "config")


def read_profile(directory: Path, env: str) -> dict[str, str]:
    path = directory / f"{env}.toml"
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"profile {path} not found (set HITA_CONFIG_DIR)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _SETTING_NAMES)
    if unknown:
        raise ConfigError(f"profile {path} sets unknown settings: {', '.join(unknown)}")
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()}


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> str:
    """A URL that parses, with one of ``schemes`` and a valid port if any: a value
    that cannot work is a configuration error at once, never a retried connection."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL: {exc}") from None
    if parts.scheme not in schemes:
        wanted = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name} must be a URL starting with {wanted}")
    return url


def database_url_from(values: _Values) -> str | None:
    url = values.optional("DATABASE_URL")
    return None if url is None else _check_url("DATABASE_URL", url, ("postgresql", "postgres"))


def redis_url_from(values: _Values) -> str | None:
    """REDIS_URL wins; else REDIS_HOST/PORT/DB/PASSWORD as in the seed; else None.

    REDIS_PASSWORD is never ignored: it fills in a REDIS_URL that has no
    password (keeping the URL's ACL user), and a REDIS_URL with another
    password is refused."""
    url = values.optional("REDIS_URL")
    password = values.optional("REDIS_PASSWORD")
    if url is not None:
        url = _check_url("REDIS_URL", url, ("redis", "rediss", "unix"))
        _check_tls(url)
        return url if password is None else _with_password(url, password)
    host = values.optional("REDIS_HOST")
    if host is None:
        return None
    auth = f":{quote(password, safe='')}@" if password else ""
    port = values.integer("REDIS_PORT", minimum=1, maximum=c.MAX_PORT)
    db = values.integer("REDIS_DB")
    return f"redis://{auth}{host}:{port}/{db}"


def _nodes(values: _Values, name: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as pairs; at least one."""
    nodes = []
    for item in values.text(name).split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be host:port,host:port..., not {item.strip()!r}")
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def _redis(values: _Values) -> RedisConfig:
    mode = values.choice("REDIS_MODE", REDIS_MODES)
    url = redis_url_from(values) if mode == "standalone" else None
    nodes: tuple[tuple[str, int], ...] = ()
    if mode == "cluster":
        if values.optional("REDIS_CLUSTER_NODES") is None:
            raise ConfigError("REDIS_MODE=cluster needs REDIS_CLUSTER_NODES")
        nodes = _nodes(values, "REDIS_CLUSTER_NODES")
    elif mode == "sentinel":
        if values.optional("REDIS_SENTINELS") is None:
            raise ConfigError("REDIS_MODE=sentinel needs REDIS_SENTINELS")
        nodes = _nodes(values, "REDIS_SENTINELS")
    return RedisConfig(
        url=url,
        max_connections=values.integer("REDIS_MAX_CONNECTIONS", minimum=1),
        socket_timeout_s=values.integer("REDIS_SOCKET_TIMEOUT_MS", minimum=1) / 1000,
        connect_timeout_s=values.integer("REDIS_CONNECT_TIMEOUT_MS", minimum=1) / 1000,
        pool_timeout_s=values.integer("REDIS_POOL_TIMEOUT_MS", minimum=1) / 1000,
        key_prefix=_key_prefix(values.text("CACHE_KEY_PREFIX")),
        mode=mode,
        nodes=nodes,
        sentinel_master=values.text("REDIS_SENTINEL_MASTER"),
        password=values.optional("REDIS_PASSWORD") if mode != "standalone" else None,
    )


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    if parts.password is not None:
        if unquote(parts.password) != password:
            raise ConfigError(
                "REDIS_PASSWORD and the password in REDIS_URL differ: set only one of them"
            )
        return url
    user = quote(unquote(parts.username), safe="") if parts.username else ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def _check_tls(url: str) -> None:
    """``rediss://`` always checks the server's certificate and host name."""
    query = {k.lower(): v[-1].lower() for k, v in parse_qs(urlsplit(url).query).items()}
    if query.get("ssl_cert_reqs", "required") != "required" or query.get(
        "ssl_check_hostname", "true"
    ) in ("false", "0", "no", "off"):
        raise ConfigError(
            "REDIS_URL turns off Redis's certificate check (ssl_cert_reqs or"
            " ssl_check_hostname): HITA always checks it; name your CA with"
            " ssl_ca_certs=/path/to/ca.pem instead"
        )


def redacted_url(url: str) -> str:
    """Where a Redis URL points, without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _key_prefix(prefix: str) -> str:
    """A prefix is part of every key and every SCAN pattern: no glob or hash-tag characters."""
    if not _KEY_PREFIX_RE.fullmatch(prefix):
        raise ConfigError("CACHE_KEY_PREFIX may hold only letters, digits and _ . : -")
    return prefix


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name other than localhost
    might resolve to anything, so it counts as reachable from outside)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth(values: _Values, env: str, host: str) -> AuthConfig:
    """``jwt_secret`` is empty when JWT_SECRET is unset, which is allowed only
    outside production on a loopback address: ``hita.devsecret`` then supplies
    the data folder's own random secret."""
    secret = values.optional("JWT_SECRET")
    if secret is None and env == "production":
        raise ConfigError("JWT_SECRET must be set to a real secret in production")
    if secret is None and not is_loopback(host):
        raise ConfigError(
            f"HOST {host} is not a loopback address: set JWT_SECRET"
            f" ({c.JWT_MIN_SECRET_BYTES}+ bytes) to serve beyond this machine"
        )
    if secret is not None and len(secret.encode()) < c.JWT_MIN_SECRET_BYTES:
        raise ConfigError(f"JWT_SECRET must be at least {c.JWT_MIN_SECRET_BYTES} bytes")
    return AuthConfig(
        jwt_secret=secret or "",
        jwt_ttl_s=values.integer("JWT_TTL_S", minimum=1),
        argon2_time_cost=values.integer("ARGON2_TIME_COST", minimum=1),
        argon2_memory_kib=values.integer("ARGON2_MEMORY_KIB", minimum=8),
        argon2_parallelism=values.integer("ARGON2_PARALLELISM", minimum=1),
    )


def _http(values: _Values) -> HttpConfig:
    host = values.text("HOST").strip()
    if not host:
        raise ConfigError("HOST must name an address to bind, such as 127.0.0.1")
    return HttpConfig(
        host=host,
        port=values.integer("PORT", minimum=1, maximum=c.MAX_PORT),
        client_max_size=values.integer("CLIENT_MAX_SIZE", minimum=1024),
        queue_delay_s=values.integer("OVERLOAD_QUEUE_DELAY_MS", minimum=0) / 1000,
        retry_after_s=values.integer("OVERLOAD_RETRY_AFTER_S", minimum=1),
        overload_pace_s=values.integer("OVERLOAD_PACE_MS") / 1000,
        access_log=values.flag("ACCESS_LOG"),
    )


def _cache(values: _Values) -> CacheConfig:
    ttls = CacheTTLs(
        user_stats=values.integer("USER_STATS_TTL", minimum=1),
        user_list=values.integer("USER_LIST_TTL", minimum=1),
        user_details=values.integer("USER_DETAILS_TTL", minimum=1),
        dashboard_stats=values.integer("DASHBOARD_STATS_TTL", minimum=1),
        superadmin_user_list=values.integer("SUPERADMIN_USER_LIST_TTL", minimum=1),
        negative=values.integer("NEGATIVE_CACHE_TTL", minimum=1),
    )
    return CacheConfig(
        ttls=ttls,
        breaker=BreakerConfig(
            failure_threshold=values.integer("CACHE_BREAKER_FAILURES", minimum=1),
            open_s=values.number("CACHE_BREAKER_OPEN_S"),
        ),
        lease_ttl_ms=values.integer("CACHE_LEASE_TTL_MS", minimum=1),
        lease_wait_ms=values.integer("CACHE_LEASE_WAIT_MS"),
        xfetch_beta=values.number("CACHE_XFETCH_BETA"),
        pending_max_users=values.integer("CACHE_PENDING_MAX_USERS", minimum=1),
        scan_budget_s=values.integer("CACHE_SCAN_BUDGET_MS", minimum=1) / 1000,
        invalidation_budget_s=values.integer("CACHE_INVALIDATION_BUDGET_MS") / 1000,
        outbox_barrier_s=values.integer("CACHE_OUTBOX_BARRIER_MS") / 1000,
        outbox_sweep_s=values.integer("CACHE_OUTBOX_SWEEP_MS", minimum=10) / 1000,
        l1_enabled=values.flag("CACHE_L1_ENABLED"),
        l1_max_entries=values.integer("CACHE_L1_MAX_ENTRIES", minimum=1),
        l1_max_bytes=values.integer("CACHE_L1_MAX_BYTES", minimum=1024),
    )


def _refresh(values: _Values, ttls: CacheTTLs) -> RefreshConfig:
    interval = values.optional("STATS_REFRESH_INTERVAL_S")
    return RefreshConfig(
        enabled=values.flag("STATS_REFRESH_ENABLED"),
        interval_s=(
            values.number("STATS_REFRESH_INTERVAL_S", minimum=0.1)
            if interval is not None
            else 0.8 * min(ttls.user_stats, ttls.dashboard_stats)
        ),
        jitter=values.number("STATS_REFRESH_JITTER"),
        warmup_on_start=values.flag("WARMUP_ON_START"),
        warmup_timeout_s=values.number("WARMUP_TIMEOUT_S"),
    )


@dataclass(frozen=True, slots=True)
class Resolved:
    """One setting's effective raw value and where it came from."""

    setting: Setting
    value: str | None
    source: str  # "environment", "profile" or "default"


def resolve(environ: Mapping[str, str]) -> tuple[str, list[Resolved]]:
    """The profile name, and every setting with its value and source, in the
    precedence ``load_config`` applies: default, then profile, then environment."""
    env = environ.get("HITA_ENV") or "development"
    if env not in ENVIRONMENTS:
        raise ConfigError(f"HITA_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    profile = read_profile(config_dir(environ), env)
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
    """Build the configuration from ``environ`` (usually ``os.environ``)."""
    env, rows = resolve(environ)
    values = _Values({row.setting.name: row.value for row in rows})

    database_url = database_url_from(values)
    redis = _redis(values)
    if env == "production" and (database_url is None or redis.needs_embedded):
        raise ConfigError("production needs DATABASE_URL and REDIS_URL (or REDIS_HOST)")
    pool_min_size = values.integer("DB_POOL_MIN_SIZE")
    pool_max_size = values.integer("DB_POOL_MAX_SIZE", minimum=1)
    if pool_min_size > pool_max_size:
        raise ConfigError(
            f"DB_POOL_MIN_SIZE ({pool_min_size}) must not exceed DB_POOL_MAX_SIZE ({pool_max_size})"
        )
    cache = _cache(values)
    http = _http(values)
    return Config(
        env=env,
        data_dir=Path(values.text("HITA_DATA_DIR")),
        log_level=values.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_format=values.choice("LOG_FORMAT", ("text", "json")),
        http=http,
        database=DatabaseConfig(
            url=database_url,
            pool_min_size=pool_min_size,
            pool_max_size=pool_max_size,
            connect_timeout_s=values.number("DB_CONNECT_TIMEOUT_S", minimum=0.1),
            command_timeout_s=values.number("DB_COMMAND_TIMEOUT_S", minimum=0.1),
            acquire_timeout_s=values.number("DB_ACQUIRE_TIMEOUT_S", minimum=0.1),
            startup_attempts=values.integer("DB_STARTUP_ATTEMPTS", minimum=1),
            auto_migrate=values.flag("DB_AUTO_MIGRATE"),
            queue_max=values.integer("DB_QUEUE_MAX"),
            queue_timeout_s=values.integer("DB_QUEUE_TIMEOUT_MS", minimum=1) / 1000,
        ),
        redis=redis,
        cache=cache,
        refresh=_refresh(values, cache.ttls),
        auth=_auth(values, env, http.host),
        login_throttle=LoginThrottleConfig(
            enabled=values.flag("LOGIN_THROTTLE_ENABLED"),
            max_failures_per_user=values.integer("LOGIN_MAX_FAILURES_PER_USER", minimum=1),
            max_failures_per_address=values.integer("LOGIN_MAX_FAILURES_PER_ADDRESS", minimum=1),
            window_s=values.integer("LOGIN_THROTTLE_WINDOW_S", minimum=1),
            local_max_keys=values.integer("LOGIN_THROTTLE_LOCAL_MAX_KEYS", minimum=1),
            trust_forwarded_for=values.flag("TRUST_X_FORWARDED_FOR"),
        ),
    )


def settings_markdown() -> str:
    """The README's table of environment variables."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default not in (None, "") else "(unset)"
        lines.append(f"| `{s.name}` | {default} | {s.help} |")
    return "\n".join(lines)
