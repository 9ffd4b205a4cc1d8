"""The configuration's shape: frozen dataclasses whose fields declare their settings.

Each field names its environment variable, type, bounds, default and help
(``hita.config.declare``); a field built from several variables says how
(``derived``). The defaults here are the built-in ones; a profile and the
environment override them (``hita.config.loader``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hita import constants as c
from hita.config import declare
from hita.config import derived as d
from hita.config.declare import (
    choice,
    derived,
    flag,
    integer,
    millis,
    number,
    path,
    section,
    text,
    url,
)
from hita.config.urls import url_check

REDIS_MODES: Final = ("standalone", "cluster", "sentinel")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str = text("HOST", c.DEFAULT_HOST, "address the HTTP server binds", check=d.address_check)
    port: int = integer(
        "PORT", c.DEFAULT_PORT, "port the HTTP server binds", minimum=1, maximum=c.MAX_PORT
    )
    client_max_size: int = integer(
        "CLIENT_MAX_SIZE", c.CLIENT_MAX_SIZE_BYTES, "largest request body, bytes", minimum=1024
    )
    queue_delay_s: float = millis(
        "OVERLOAD_QUEUE_DELAY_MS",
        c.OVERLOAD_QUEUE_DELAY_MS,
        "queueing delay in the instance (docs/load.md) past which requests are refused"
        " 503 overloaded, ms (0: never)",
    )
    retry_after_s: int = integer(
        "OVERLOAD_RETRY_AFTER_S", c.OVERLOAD_RETRY_AFTER_S, "Retry-After of a 503, s", minimum=1
    )
    overload_pace_s: float = millis(
        "OVERLOAD_PACE_MS",
        c.OVERLOAD_PACE_MS,
        "after a 503 overloaded, wait before reading that connection's next request, ms",
    )
    access_log: bool = flag("ACCESS_LOG", True, "one INFO line per request (logger hita.access)")
    access_log_flush_s: float = millis(
        "ACCESS_LOG_FLUSH_MS",
        c.ACCESS_LOG_FLUSH_MS,
        "access lines are written together this long after the first of them (or once"
        " 1,024 wait), ms (0: at the end of each event-loop turn)",
    )


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str | None = url(
        "DATABASE_URL",
        "PostgreSQL DSN; unset: start the embedded PostgreSQL",
        check=url_check("postgresql", "postgres"),
    )
    pool_min_size: int = integer(
        "DB_POOL_MIN_SIZE", c.DB_POOL_MIN_SIZE, "asyncpg pool: connections kept open"
    )
    pool_max_size: int = integer(
        "DB_POOL_MAX_SIZE", c.DB_POOL_MAX_SIZE, "asyncpg pool: most connections", minimum=1
    )
    connect_timeout_s: float = number(
        "DB_CONNECT_TIMEOUT_S", c.DB_CONNECT_TIMEOUT_S, "time to open a connection, s", minimum=0.1
    )
    command_timeout_s: float = number(
        "DB_COMMAND_TIMEOUT_S", c.DB_COMMAND_TIMEOUT_S, "time a statement may run, s", minimum=0.1
    )
    acquire_timeout_s: float = number(
        "DB_ACQUIRE_TIMEOUT_S",
        c.DB_ACQUIRE_TIMEOUT_S,
        "wait for a free connection outside requests, s",
        minimum=0.1,
    )
    startup_attempts: int = integer(
        "DB_STARTUP_ATTEMPTS", c.DB_STARTUP_ATTEMPTS, "connection attempts at start-up", minimum=1
    )
    auto_migrate: bool = flag(
        "DB_AUTO_MIGRATE", True, "apply pending migrations when the service starts"
    )
    queue_max: int = integer(
        "DB_QUEUE_MAX", c.DB_QUEUE_MAX, "requests that may wait for a connection; beyond: 503"
    )
    queue_timeout_s: float = millis(
        "DB_QUEUE_TIMEOUT_MS",
        c.DB_QUEUE_TIMEOUT_MS,
        "longest a request waits for connections, in all, before 503 overloaded, ms",
        minimum=1,
    )
    reader_url: str | None = declare.url(  # ``url`` is the field above, in here
        "DATABASE_READER_URL",
        "PostgreSQL DSN of each instance's reader session (a direct or session-pooled"
        " address: its LISTEN needs one); unset: DATABASE_URL",
        check=url_check("postgresql", "postgres"),
    )
    statement_cache_size: int = integer(
        "DB_STATEMENT_CACHE_SIZE",
        c.DB_STATEMENT_CACHE_SIZE,
        "prepared statements cached per pooled connection; 0 behind PgBouncer in transaction mode",
    )

    @property
    def session_url(self) -> str | None:
        """Where the reader session connects: its own DSN, else the pool's."""
        return self.reader_url or self.url


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str | None = derived(
        d.redis_url,
        d.REDIS_URL,
        d.REDIS_HOST,
        d.REDIS_PORT,
        d.REDIS_DB,
        d.REDIS_PASSWORD,
        default=None,
        secret=True,
    )
    max_connections: int = integer(
        "REDIS_MAX_CONNECTIONS", c.REDIS_MAX_CONNECTIONS, "Redis pool size", minimum=1
    )
    socket_timeout_s: float = millis(
        "REDIS_SOCKET_TIMEOUT_MS", c.REDIS_SOCKET_TIMEOUT_MS, "per-command timeout, ms", minimum=1
    )
    connect_timeout_s: float = millis(
        "REDIS_CONNECT_TIMEOUT_MS", c.REDIS_CONNECT_TIMEOUT_MS, "connect timeout, ms", minimum=1
    )
    pool_timeout_s: float = millis(
        "REDIS_POOL_TIMEOUT_MS",
        c.REDIS_POOL_TIMEOUT_MS,
        "wait for a free connection, ms",
        minimum=1,
    )
    key_prefix: str = text(
        "CACHE_KEY_PREFIX",
        "",
        "prefix of every cache key, for a shared Redis",
        check=d.key_prefix_check,
    )
    mode: str = choice("REDIS_MODE", REDIS_MODES, "standalone", "one server, cluster or sentinel")
    nodes: tuple[tuple[str, int], ...] = derived(
        d.redis_nodes, d.REDIS_CLUSTER_NODES, d.REDIS_SENTINELS, default=()
    )
    sentinel_master: str = text("REDIS_SENTINEL_MASTER", "mymaster", "sentinel mode: master's name")
    password: str | None = derived(d.redis_password, default=None, secret=True)

    @property
    def needs_embedded(self) -> bool:
        """A single server with no URL: the embedded Redis supplies it."""
        return self.mode == "standalone" and self.url is None


@dataclass(frozen=True, slots=True)
class CacheTTLs:
    user_stats: int = integer(
        "USER_STATS_TTL", c.USER_STATS_TTL_S, "user statistics TTL, s", minimum=1
    )
    user_list: int = integer("USER_LIST_TTL", c.USER_LIST_TTL_S, "user list TTL, s", minimum=1)
    user_details: int = integer(
        "USER_DETAILS_TTL", c.USER_DETAILS_TTL_S, "user details TTL, s", minimum=1
    )
    dashboard_stats: int = integer(
        "DASHBOARD_STATS_TTL", c.DASHBOARD_STATS_TTL_S, "dashboard statistics TTL, s", minimum=1
    )
    superadmin_user_list: int = integer(
        "SUPERADMIN_USER_LIST_TTL",
        c.SUPERADMIN_USER_LIST_TTL_S,
        "superadmin list TTL, s",
        minimum=1,
    )
    negative: int = integer(
        "NEGATIVE_CACHE_TTL", c.NEGATIVE_CACHE_TTL_S, "TTL of a cached 'not found', s", minimum=1
    )

    def for_type(self, cache_type: str) -> int:
        ttl = getattr(self, cache_type, None)
        if not isinstance(ttl, int):
            raise KeyError(cache_type)
        return ttl


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = integer(
        "CACHE_BREAKER_FAILURES",
        c.BREAKER_FAILURE_THRESHOLD,
        "consecutive connection failures that open the circuit breaker (a timeout: one)",
        minimum=1,
    )
    open_s: float = number("CACHE_BREAKER_OPEN_S", c.BREAKER_OPEN_S, "time it stays open, s")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    ttls: CacheTTLs = section(CacheTTLs)
    breaker: BreakerConfig = section(BreakerConfig)
    lease_ttl_ms: int = integer(
        "CACHE_LEASE_TTL_MS", c.LEASE_TTL_MS, "how long a loader holds a key's lease, ms", minimum=1
    )
    lease_wait_ms: int = integer(
        "CACHE_LEASE_WAIT_MS", c.LEASE_WAIT_MS, "how long a reader waits for another loader, ms"
    )
    xfetch_beta: float = number(
        "CACHE_XFETCH_BETA", c.XFETCH_BETA, "early recomputation eagerness (0 disables)"
    )
    ttl_jitter: float = number(
        "CACHE_TTL_JITTER",
        c.CACHE_TTL_JITTER,
        "each fill's TTL is drawn from [TTL * (1 - this), TTL], so keys filled together do not"
        " expire together (0: the TTL exactly)",
        maximum=0.5,
    )
    pending_max_users: int = integer(
        "CACHE_PENDING_MAX_USERS",
        c.PENDING_INVALIDATIONS_MAX_USERS,
        "pending user ids kept",
        minimum=1,
    )
    scan_budget_s: float = millis(
        "CACHE_SCAN_BUDGET_MS",
        c.CACHE_SCAN_BUDGET_MS,
        "time for counting keys; past it, estimates, ms",
        minimum=1,
    )
    invalidation_budget_s: float = millis(
        "CACHE_INVALIDATION_BUDGET_MS",
        c.INVALIDATION_BUDGET_MS,
        "how long a write retries its invalidation in Redis before answering, ms",
    )
    replica_wait_s: float = millis(
        "CACHE_REPLICA_WAIT_MS",
        c.REPLICA_WAIT_MS,
        "Sentinel, Cluster: how long an invalidation waits for a replica to have it"
        " (WAIT) before it counts as not acknowledged, ms; 0: the master's word is"
        " enough (then a failover can lose it). Every replica the failover manager"
        " lists is waited for, held down or not",
    )
    reader_lease_s: float = millis(
        "CACHE_READER_LEASE_MS",
        c.READER_LEASE_MS,
        "how long an instance trusts Redis after renewing its lease (same on all), ms",
        minimum=100,
    )
    reader_renew_s: float = millis(
        "CACHE_READER_RENEW_MS",
        c.READER_RENEW_MS,
        "how often an instance renews its lease, ms",
        minimum=10,
    )
    outbox_sweep_s: float = millis(
        "CACHE_OUTBOX_SWEEP_MS", c.OUTBOX_SWEEP_MS, "how often the outbox is swept, ms", minimum=10
    )
    outbox_retention_s: int = integer(
        "CACHE_OUTBOX_RETENTION_S",
        c.OUTBOX_RETENTION_S,
        "applied changes kept in the outbox (re-applied after a Redis failover), s",
    )
    outbox_max_rows: int = integer(
        "CACHE_OUTBOX_MAX_ROWS",
        c.OUTBOX_MAX_ROWS,
        "unapplied changes kept; past it they collapse into one 'every user changed'",
        minimum=1,
    )
    serve_when_db_down: bool = flag(
        "CACHE_SERVE_WHEN_DB_DOWN",
        True,
        "serve what Redis holds while PostgreSQL is down for every instance",
    )
    l1_enabled: bool = flag(
        "CACHE_L1_ENABLED", True, "an in-process near cache kept coherent by Redis tracking"
    )
    l1_max_entries: int = integer(
        "CACHE_L1_MAX_ENTRIES",
        c.L1_MAX_ENTRIES,
        "near cache: most entries per cache type",
        minimum=1,
    )
    l1_max_bytes: int = integer(
        "CACHE_L1_MAX_BYTES",
        c.L1_MAX_BYTES,
        "near cache: most bytes of stored entries per cache type",
        minimum=1024,
    )
    l1_max_age_s: float = millis(
        "CACHE_L1_MAX_AGE_MS",
        c.L1_MAX_AGE_MS,
        "near cache: longest an entry is served before it is read from Redis again, ms",
        minimum=1,
    )


@dataclass(frozen=True, slots=True)
class RefreshConfig:
    enabled: bool = flag("STATS_REFRESH_ENABLED", True, "run the scheduled statistics refresh")
    interval_s: float = derived(
        d.refresh_interval,
        d.STATS_REFRESH_INTERVAL,
        default=0.8 * min(c.USER_STATS_TTL_S, c.DASHBOARD_STATS_TTL_S),
    )
    jitter: float = number(
        "STATS_REFRESH_JITTER", 0.1, "random fraction added to or taken from each interval"
    )
    warmup_on_start: bool = flag(
        "WARMUP_ON_START", True, "warm the essential caches when the service starts"
    )
    warmup_timeout_s: float = number(
        "WARMUP_TIMEOUT_S", 5.0, "how long start-up waits for the cache warm-up, s"
    )


@dataclass(frozen=True, slots=True)
class AuthConfig:
    jwt_secret: str = derived(d.jwt_secret, d.JWT_SECRET, default="", secret=True)
    jwt_ttl_s: int = integer("JWT_TTL_S", c.JWT_TTL_S, "access token lifetime, s", minimum=1)
    argon2_time_cost: int = integer("ARGON2_TIME_COST", 3, "argon2id passes", minimum=1)
    argon2_memory_kib: int = integer("ARGON2_MEMORY_KIB", 65536, "argon2id memory, KiB", minimum=8)
    argon2_parallelism: int = integer("ARGON2_PARALLELISM", 4, "argon2id lanes", minimum=1)


@dataclass(frozen=True, slots=True)
class LoginThrottleConfig:
    enabled: bool = flag(
        "LOGIN_THROTTLE_ENABLED", True, "answer 429 to logins after too many failures"
    )
    max_failures_per_user: int = integer(
        "LOGIN_MAX_FAILURES_PER_USER",
        c.LOGIN_MAX_FAILURES_PER_USER,
        "failed logins per username in a window before 429",
        minimum=1,
    )
    max_failures_per_address: int = integer(
        "LOGIN_MAX_FAILURES_PER_ADDRESS",
        c.LOGIN_MAX_FAILURES_PER_ADDRESS,
        "failed logins per client address in a window before 429",
        minimum=1,
    )
    window_s: int = integer(
        "LOGIN_THROTTLE_WINDOW_S", c.LOGIN_THROTTLE_WINDOW_S, "throttling window, s", minimum=1
    )
    trust_forwarded_for: bool = flag(
        "TRUST_X_FORWARDED_FOR",
        False,
        "client address from the last X-Forwarded-For entry (behind one reverse proxy)",
    )


@dataclass(frozen=True, slots=True)
class Config:
    env: str = derived(
        d.environment,
        d.HITA_ENV,
        d.CONFIG_DIR,
        default="development",
    )
    data_dir: Path = path(
        "HITA_DATA_DIR", ".hita", "where the embedded PostgreSQL and Redis keep their data"
    )
    log_level: str = choice("LOG_LEVEL", LOG_LEVELS, "INFO", "least severe level logged")
    log_format: str = choice(
        "LOG_FORMAT", ("text", "json"), "text", "readable lines, or one JSON object per line"
    )
    http: HttpConfig = section(HttpConfig)
    database: DatabaseConfig = section(DatabaseConfig)
    redis: RedisConfig = section(RedisConfig)
    cache: CacheConfig = section(CacheConfig)
    refresh: RefreshConfig = section(RefreshConfig)
    auth: AuthConfig = section(AuthConfig)
    login_throttle: LoginThrottleConfig = section(LoginThrottleConfig)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def needs_embedded(self, *, database: bool = True, redis: bool = True) -> bool:
        """Whether an embedded server must be started: PostgreSQL without a
        DATABASE_URL, a standalone Redis without a URL (cluster and sentinel
        name their own servers)."""
        return (database and self.database.url is None) or (redis and self.redis.needs_embedded)
