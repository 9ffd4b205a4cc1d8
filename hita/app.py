"""``create_app(config)``: assembles the service. Reads no environment."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import asyncpg
from aiohttp import web

from hita.api.errors import error_middleware
from hita.api.middlewares import request_context_middleware
from hita.api.routes import setup_routes
from hita.appkeys import CACHE, CONFIG, DATABASE
from hita.cache.client import RedisCache
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.config import Config
from hita.db.database import Database, create_pool
from hita.db.migrate import apply_migrations

log = logging.getLogger(__name__)

POOL_CLOSE_TIMEOUT_S = 10.0


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("PostgreSQL pool did not close in time; terminating it")
        pool.terminate()


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Open every resource in dependency order; the exit stack closes them in reverse."""
    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        pool = await create_pool(config.database)
        stack.push_async_callback(_close_pool, pool)
        database = Database(pool, config.database.acquire_timeout_s)
        if config.database.auto_migrate:
            async with database.connection() as conn:
                await apply_migrations(conn)
        app[DATABASE] = database

        cache = RedisCache(
            create_redis(config.redis), config.cache, KeyBuilder(config.redis.key_prefix)
        )
        stack.push_async_callback(cache.aclose)
        app[CACHE] = cache
        log.info("resources ready")
        yield
        log.info("closing resources")


def create_app(config: Config) -> web.Application:
    app = web.Application(
        client_max_size=config.http.client_max_size,
        middlewares=[request_context_middleware, error_middleware],
    )
    app[CONFIG] = config
    app.cleanup_ctx.append(_resources)
    setup_routes(app)
    return app
