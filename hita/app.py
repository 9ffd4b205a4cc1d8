"""``create_app(config)``: assembles the service. Reads no environment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web

from hita.api.access_log import AccessLog
from hita.api.admission import Admission
from hita.api.auth import Authenticator
from hita.api.front import Front
from hita.api.invalidation import cache_invalidation_middleware, invalidation_patterns
from hita.api.openapi import document_bytes
from hita.api.router import setup_routes
from hita.api.routes import ROUTES
from hita.appkeys import (
    ACCESS_LOG,
    ADMISSION,
    AUTH_SERVICE,
    CACHE,
    CACHE_ADMIN,
    CACHE_KEYS,
    COHERENCE,
    CONFIG,
    DATABASE,
    INSTANCE,
    METRICS,
    OPENAPI,
    PERMISSION_SERVICE,
    POINTS_SERVICE,
    REFRESHER,
    USER_SERVICE,
    WARMUP,
)
from hita.cache.breaker import BreakerState
from hita.cache.client import RedisCache
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.cache.near import NearCache
from hita.cache.sentinel_watch import SentinelWatch
from hita.cache.tracking import tracking_for
from hita.config import Config, ConfigError, redact
from hita.constants import (
    CACHE_TYPES,
    COHERENCE_READY_S,
    LISTEN_PROBE_BOUND_S,
    LISTEN_PROBE_GRACE_S,
    MAX_HEADER_FIELD_BYTES,
)
from hita.db.database import Database, close_pool, create_pool
from hita.db.gate import PoolGate
from hita.db.migrate import apply_migrations, check_migrated
from hita.errors import DatabaseUnavailable, HitaError
from hita.metrics import Metrics
from hita.services.auth import AuthService
from hita.services.cache_admin import CacheAdmin
from hita.services.cache_keys import CacheKeys
from hita.services.cached_users import CachedUserService
from hita.services.coherence import CacheCoherence
from hita.services.instance import InstanceView
from hita.services.login_throttle import LoginThrottle
from hita.services.passwords import Passwords
from hita.services.permissions import PermissionService
from hita.services.points import PointsService
from hita.services.refresh import StatsRefresher
from hita.services.tokens import Tokens
from hita.services.turns import Turns
from hita.services.warmup import CacheWarmupService
from hita.tasks import running

log = logging.getLogger(__name__)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Open every resource in dependency order; the exit stack closes them in reverse."""
    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        if ACCESS_LOG in app:
            stack.callback(app[ACCESS_LOG].flush)  # the last lines, once requests are done
        database, gate = await _open_database(config, stack)
        app[METRICS].watch_gate(gate)
        app[DATABASE] = database

        cache = await _open_cache(config, stack)
        app[CACHE] = cache
        # One clear line at start when Redis cannot be used (NOAUTH, WRONGPASS, TLS...).
        where = redact(config.redis.url or "")
        await cache.ping(what=f"Redis at {where} cannot be used; serving from PostgreSQL")

        # While Redis cannot be used, every request queues for a PostgreSQL
        # connection: once that queue refuses, refuse at the door instead.
        breaker = cache.breaker
        app[ADMISSION].downstream = lambda: (
            0.0 if breaker.state is BreakerState.CLOSED else gate.refusing_s()
        )

        cache_keys = CacheKeys(cache)
        app[CACHE_KEYS] = cache_keys
        app[METRICS].watch_cache(cache)

        app[COHERENCE] = await _open_coherence(config, cache_keys, database, stack)

        passwords = Passwords(config.auth)
        stack.callback(passwords.close)
        users = CachedUserService(database, passwords, cache_keys, config.cache.ttls)
        app[USER_SERVICE] = users
        app[POINTS_SERVICE] = PointsService(database, Turns(config.database.queue_max))
        app[PERMISSION_SERVICE] = PermissionService(database)
        throttle = LoginThrottle(database, config.login_throttle)
        app[AUTH_SERVICE] = AuthService(database, passwords, Tokens(config.auth), throttle)

        warmup = CacheWarmupService(users)
        app[WARMUP] = warmup
        app[CACHE_ADMIN] = CacheAdmin(cache_keys, warmup, config.cache.scan_budget_s)
        if config.refresh.warmup_on_start:
            task = await stack.enter_async_context(running(_warm(warmup), "cache-warmup"))
            # Readiness waits for the warm-up at most this long; it goes on after.
            await asyncio.wait({task}, timeout=config.refresh.warmup_timeout_s)

        refresher = StatsRefresher(
            cache, users.refresh_stats, config.refresh.interval_s, config.refresh.jitter
        )
        app[REFRESHER] = refresher
        app[METRICS].watch_refresher(refresher)
        view = InstanceView(
            cache,
            app[COHERENCE],
            refresher,
            database,
            redis_mode=config.redis.mode,
            http=app[METRICS].http_summary,
        )
        app[INSTANCE] = view
        app[METRICS].watch_coherence(app[COHERENCE], cache, lambda: view.outbox_lag)
        if config.refresh.enabled:
            await stack.enter_async_context(running(refresher.run_forever(), "stats-refresh"))
        if config.http.queue_delay_s:  # admission's probe of the event loop
            await stack.enter_async_context(running(app[ADMISSION].watch(), "admission"))
        log.info("resources ready")
        yield
        log.info("closing resources")


async def _open_database(config: Config, stack: AsyncExitStack) -> tuple[Database, PoolGate]:
    """The PostgreSQL pool behind its gate, migrated (or checked to be)."""
    pool = await create_pool(config.database)
    stack.push_async_callback(close_pool, pool)
    gate = PoolGate(
        config.database.pool_max_size,
        max_waiters=config.database.queue_max,
        budget_s=config.database.queue_timeout_s,
    )
    database = Database(pool, config.database.acquire_timeout_s, gate)
    async with database.connection() as conn:
        if config.database.auto_migrate:
            await apply_migrations(conn)
        else:
            await check_migrated(conn)  # a release runs `hita migrate` first
    return database, gate


async def _open_cache(config: Config, stack: AsyncExitStack) -> RedisCache:
    """The Redis cache, with its L1 near cache and tracking when enabled."""
    cache = RedisCache(
        create_redis(config.redis),
        config.cache,
        KeyBuilder(config.redis.key_prefix),
        stale_ok=(DatabaseUnavailable,) if config.cache.serve_when_db_down else (),
    )
    stack.push_async_callback(cache.aclose)
    if isinstance(cache.replicas, SentinelWatch):  # the master, its replicas, failovers
        await stack.enter_async_context(running(cache.replicas.run_forever(), "sentinel-watch"))
    if config.cache.l1_enabled and (config.redis.url or config.redis.mode != "standalone"):
        tracking = tracking_for(
            config.redis,
            cache.redis,
            [f"{config.redis.key_prefix}{name}:" for name in CACHE_TYPES],
            cache.tracked_keys,
        )
        near = NearCache(
            config.cache.l1_max_entries,
            config.cache.l1_max_bytes,
            max_age_s=config.cache.l1_max_age_s,
        )
        cache.attach_near(near, tracking)
        await stack.enter_async_context(running(tracking.run_forever(), "cache-tracking"))
    return cache


async def _open_coherence(
    config: Config, cache_keys: CacheKeys, database: Database, stack: AsyncExitStack
) -> CacheCoherence:
    """Every change, by any instance or by hand, reaches this instance's cache.
    Until its first lease the cache is not trusted: reads go to PostgreSQL."""
    coherence = CacheCoherence(
        cache_keys,
        database,
        config.database.session_url or "",
        config.cache,
        connect_timeout_s=config.database.connect_timeout_s,
    )
    await stack.enter_async_context(running(coherence.run_forever(), "cache-coherence"))
    await stack.enter_async_context(running(coherence.sweep_forever(), "outbox-sweep"))
    try:
        async with asyncio.timeout(COHERENCE_READY_S):
            await coherence.ready.wait()
    except TimeoutError:
        log.warning("no reader lease yet; reading PostgreSQL until there is one")
    # So that health tells from the first request whether LISTEN delivers.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LISTEN_PROBE_BOUND_S + LISTEN_PROBE_GRACE_S):
            await coherence.session.probe.judged.wait()
    return coherence


async def _warm(warmup: CacheWarmupService) -> None:
    try:
        await warmup.warm_essential_caches()
    except HitaError as exc:  # the database is down: the cache fills as requests come
        log.warning("cache warm-up skipped: %s", exc)


def create_app(config: Config, *, access_log: AccessLog | None = None) -> web.Application:
    """The service. ``access_log``: where access lines go (default: where the
    other log lines go; none with ``ACCESS_LOG=false``)."""
    if not config.auth.jwt_secret:
        raise ConfigError("no token-signing secret: set JWT_SECRET (see hita.devsecret)")
    app = web.Application(
        client_max_size=config.http.client_max_size,
        handler_args={
            "max_line_size": MAX_HEADER_FIELD_BYTES,
            "max_field_size": MAX_HEADER_FIELD_BYTES,
        },
    )
    app[CONFIG] = config
    metrics = app[METRICS] = Metrics()
    admission = app[ADMISSION] = Admission(config.http.queue_delay_s)
    metrics.watch_in_flight(
        lambda: (admission.in_flight, admission.peak, admission.refused, admission.delay_s)
    )
    if config.http.access_log:
        access_log = app[ACCESS_LOG] = access_log or AccessLog.beside_logging(
            config.log_format, flush_after_s=config.http.access_log_flush_s
        )
    front = Front(
        auth=Authenticator(config.auth.jwt_secret),
        admission=admission,
        metrics=metrics,
        access_log=access_log if config.http.access_log else None,
        http=config.http,
        wait_budget_s=config.database.queue_timeout_s,
        # Around each mutating route's answer: a 2xx invalidates what it changed.
        invalidation=cache_invalidation_middleware(invalidation_patterns(ROUTES)),
        held_answers=config.cache.l1_enabled,
    )
    setup_routes(app, ROUTES, front)
    app.cleanup_ctx.append(_resources)
    app[OPENAPI] = document_bytes(ROUTES)
    return app
