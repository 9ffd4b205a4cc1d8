"""The Redis connection pool: explicit size, hiredis parser, short timeouts,
no hidden retries (a failed command fails once, fast, and the breaker decides)."""

from __future__ import annotations

import logging

from redis._parsers import _AsyncHiredisParser
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.utils import HIREDIS_AVAILABLE

from hita.config import RedisConfig

log = logging.getLogger(__name__)


def create_redis(config: RedisConfig) -> Redis:
    """A client over a bounded pool. Opening it does no I/O: connections are made
    on first use, so the service starts even when Redis is down."""
    if config.url is None:
        raise ValueError("Redis URL is not set")
    if not HIREDIS_AVAILABLE:
        raise RuntimeError("hiredis is required: install redis[hiredis]")
    pool = BlockingConnectionPool.from_url(
        config.url,
        max_connections=config.max_connections,
        timeout=config.pool_timeout_s,
        socket_timeout=config.socket_timeout_s,
        socket_connect_timeout=config.connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
        parser_class=_AsyncHiredisParser,
        client_name="hita",
    )
    return Redis(connection_pool=pool)
