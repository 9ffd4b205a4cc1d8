"""``create_app(config)``: assembles the service. Reads no environment."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web

from hita.api.auth import auth_middleware
from hita.api.errors import error_middleware
from hita.api.middlewares import request_context_middleware
from hita.api.routes import setup_routes
from hita.appkeys import (
    AUTH_SERVICE,
    CACHE,
    CONFIG,
    DATABASE,
    PERMISSION_SERVICE,
    POINTS_SERVICE,
    USER_SERVICE,
)
from hita.cache.client import RedisCache
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.config import Config
from hita.constants import MAX_HEADER_FIELD_BYTES
from hita.db.database import Database, close_pool, create_pool
from hita.db.migrate import apply_migrations
from hita.services.auth import AuthService
from hita.services.passwords import Passwords
from hita.services.permissions import PermissionService
from hita.services.points import PointsService
from hita.services.tokens import Tokens
from hita.services.users import UserService

log = logging.getLogger(__name__)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Open every resource in dependency order; the exit stack closes them in reverse."""
    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        pool = await create_pool(config.database)
        stack.push_async_callback(close_pool, pool)
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

        passwords = Passwords(config.auth)
        stack.callback(passwords.close)
        app[USER_SERVICE] = UserService(database, passwords)
        app[POINTS_SERVICE] = PointsService(database)
        app[PERMISSION_SERVICE] = PermissionService(database)
        app[AUTH_SERVICE] = AuthService(database, passwords, Tokens(config.auth))
        log.info("resources ready")
        yield
        log.info("closing resources")


def create_app(config: Config) -> web.Application:
    app = web.Application(
        client_max_size=config.http.client_max_size,
        handler_args={
            "max_line_size": MAX_HEADER_FIELD_BYTES,
            "max_field_size": MAX_HEADER_FIELD_BYTES,
        },
        middlewares=[
            request_context_middleware,
            # The cache-invalidation middleware goes here (next issue): outside the
            # error middleware, so it sees the final status of every response.
            error_middleware,
            auth_middleware(config.auth.jwt_secret),
        ],
    )
    app[CONFIG] = config
    app.cleanup_ctx.append(_resources)
    setup_routes(app)
    return app
