"""Named numbers and names, each with its unit, defined once."""

from typing import Final

API_PREFIX: Final = "/v1.0"

# Cache types (the seed's five key families).
USER_STATS: Final = "user_stats"
USER_LIST: Final = "user_list"
USER_DETAILS: Final = "user_details"
DASHBOARD_STATS: Final = "dashboard_stats"
SUPERADMIN_USER_LIST: Final = "superadmin_user_list"
CACHE_TYPES: Final = (USER_STATS, USER_LIST, USER_DETAILS, DASHBOARD_STATS, SUPERADMIN_USER_LIST)
# The four families invalidated as a whole, in O(1), through a generation token.
NAMESPACES: Final = (USER_STATS, USER_LIST, DASHBOARD_STATS, SUPERADMIN_USER_LIST)

# Seed TTLs (the profile-less defaults), in seconds.
USER_STATS_TTL_S: Final = 300  # 5 minutes
USER_LIST_TTL_S: Final = 60  # 1 minute
USER_DETAILS_TTL_S: Final = 180  # 3 minutes
DASHBOARD_STATS_TTL_S: Final = 600  # 10 minutes
SUPERADMIN_USER_LIST_TTL_S: Final = 900  # 15 minutes
NEGATIVE_CACHE_TTL_S: Final = 15  # "not found" is remembered briefly

# Redis client.
REDIS_MAX_CONNECTIONS: Final = 32
REDIS_SOCKET_TIMEOUT_MS: Final = 250  # request path: a slow cache is a missing cache
REDIS_CONNECT_TIMEOUT_MS: Final = 250
REDIS_POOL_TIMEOUT_MS: Final = 250  # bounded wait for a free connection

# Circuit breaker.
BREAKER_FAILURE_THRESHOLD: Final = 5  # consecutive failures that open it
BREAKER_OPEN_S: Final = 2.0  # cool-down before a half-open probe

# Stampede protection.
LEASE_TTL_MS: Final = 10_000  # how long a loader may hold a key's lease
LEASE_WAIT_MS: Final = 1_000  # how long a reader waits for another loader
XFETCH_BETA: Final = 1.0  # Vattani et al.: 1.0 is the paper's default
CACHE_TTL_JITTER: Final = 0.1  # a fill's TTL: up to 10 % shorter, drawn per fill

# Monitoring.
CACHE_ERROR_LOG_INTERVAL_S: Final = 10.0  # one log line per kind of cache error per 10 s
CACHE_SCAN_BUDGET_MS: Final = 1_000  # key counts past this are estimates

# Invalidations that could not reach Redis.
PENDING_INVALIDATIONS_MAX_USERS: Final = 1_000  # beyond this, all user details go
# A write waits this long for its invalidation to reach Redis before it answers
# (past it, it waits for every instance to take the change in: reader leases).
INVALIDATION_BUDGET_MS: Final = 100
READER_LEASE_MS: Final = 1_500  # an instance trusts Redis this long after a renewal
READER_RENEW_MS: Final = 250  # and renews its lease this often
OUTBOX_SWEEP_MS: Final = 1_000  # how often the outbox of invalidations is swept
OUTBOX_RETENTION_S: Final = 30  # applied changes kept, for re-applying after a failover
OUTBOX_MAX_ROWS: Final = 10_000  # unapplied changes kept before they collapse into one
OUTBOX_CHANNEL: Final = "hita_cache"  # the LISTEN/NOTIFY channel of the outbox
COHERENCE_READY_S: Final = 5.0  # start-up waits this long for a lease; reads use SQL till then
# An invalidation on a master with a replica counts as acknowledged once a
# replica has it (WAIT): a failover then cannot lose it.
REPLICA_WAIT_MS: Final = 50
# The reader session NOTIFYs itself a probe this often, and calls its LISTEN
# deaf when the probe has not come back within the bound (PgBouncer in
# transaction mode never delivers it).
LISTEN_PROBE_INTERVAL_S: Final = 5.0
LISTEN_PROBE_BOUND_S: Final = 2.0
LISTEN_PROBE_GRACE_S: Final = 0.5  # start-up waits the bound and this for the first verdict

# PostgreSQL.
DB_POOL_MIN_SIZE: Final = 2
DB_POOL_MAX_SIZE: Final = 20
DB_CONNECT_TIMEOUT_S: Final = 3.0
DB_COMMAND_TIMEOUT_S: Final = 10.0
DB_ACQUIRE_TIMEOUT_S: Final = 3.0
DB_STARTUP_ATTEMPTS: Final = 3
DB_STATEMENT_CACHE_SIZE: Final = 100  # asyncpg's own default; 0 behind a transaction pooler
# The queue in front of the pool: short and measured (hita.db.gate).
DB_QUEUE_MAX: Final = 128  # requests that may wait for a connection at once
DB_QUEUE_TIMEOUT_MS: Final = 250  # longest wait for a connection before "overloaded"

# HTTP.
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8080
MAX_PORT: Final = 65_535
CLIENT_MAX_SIZE_BYTES: Final = 1024 * 1024  # 1 MiB
# Admission control (hita.api.admission): the standing queueing delay in the
# event loop past which new requests are answered 503 "overloaded" at once.
OVERLOAD_QUEUE_DELAY_MS: Final = 100
OVERLOAD_RETRY_AFTER_S: Final = 1  # the Retry-After of that answer
ACCESS_LOG_FLUSH_MS: Final = 100  # access lines go out together, as nginx's flush=
OVERLOAD_PACE_MS: Final = 500  # then that connection's next request is read this much later
# A status that no client sees: the client hung up before its answer (nginx's 499).
CLIENT_CLOSED_REQUEST: Final = 499
# Largest request line and header field. aiohttp's default (8190 bytes) would
# answer an over-long token with its own plain-text 400 before our code runs;
# with this, a token over MAX_TOKEN_BYTES reaches the auth layer and gets our 401.
MAX_HEADER_FIELD_BYTES: Final = 16 * 1024  # 16 KiB
SHUTDOWN_TIMEOUT_S: Final = 10.0
# If-None-Match values past either bound are ignored (a full 200 answer).
MAX_IF_NONE_MATCH_BYTES: Final = 2048  # 2 KiB, dozens of tags
MAX_IF_NONE_MATCH_TAGS: Final = 32
# glibc's default mmap threshold, pinned (hita.malloc): 128 KiB
MALLOC_MMAP_THRESHOLD_BYTES: Final = 128 * 1024

# Auth.
JWT_ALGORITHM: Final = "HS256"
JWT_TOKEN_TYPE: Final = "Bearer"  # noqa: S105 - a scheme name, not a secret
JWT_TTL_S: Final = 3600  # 1 hour
JWT_MIN_SECRET_BYTES: Final = 32
MAX_TOKEN_BYTES: Final = 8 * 1024  # 8 KiB
VERIFIED_TOKENS_MAX: Final = 10_000  # tokens whose verified claims are kept until exp
L1_MAX_ENTRIES: Final = 10_000  # entries of the in-process near cache
L1_MAX_BYTES: Final = 32 * 1024 * 1024  # 32 MiB of stored entries, at most
L1_MAX_AGE_MS: Final = 30_000  # an L1 entry is read from Redis again after 30 s at most
# L1 serves while tracking's last PONG answers a PING sent this recently, and a
# writer answers this long after Redis acknowledged its invalidation: no read
# on any instance misses an acknowledged write (docs/cache.md, L1).
L1_FRESH_MS: Final = 25

# Failed-login throttling.
LOGIN_MAX_FAILURES_PER_USER: Final = 5  # per username and window
LOGIN_MAX_FAILURES_PER_ADDRESS: Final = 50  # per client address and window (NAT: generous)
LOGIN_THROTTLE_WINDOW_S: Final = 300  # 5 minutes
