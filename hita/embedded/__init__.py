"""Private PostgreSQL and Redis servers for local runs and tests.

``embedded_dependencies(config)`` starts a server for each dependency whose URL
the configuration leaves unset, and yields the configuration with those URLs
filled in; on exit it stops what it started, in reverse order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from hita.config import Config
from hita.embedded.postgres import EmbeddedPostgres
from hita.embedded.redis import EmbeddedRedis

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "embedded_dependencies"]

log = logging.getLogger(__name__)


@contextmanager
def embedded_dependencies(
    config: Config, *, database: bool = True, redis: bool = True
) -> Iterator[Config]:
    with ExitStack() as stack:
        root = config.data_dir.resolve()
        if database and config.database.url is None:
            postgres = EmbeddedPostgres(root / "postgres")
            stack.callback(postgres.stop)
            postgres.start()
            config = dataclasses.replace(
                config, database=dataclasses.replace(config.database, url=postgres.url)
            )
        if redis and config.redis.needs_embedded:
            server = EmbeddedRedis(root / "redis")
            stack.callback(server.stop)
            server.start()
            config = dataclasses.replace(
                config, redis=dataclasses.replace(config.redis, url=server.url)
            )
        yield config
