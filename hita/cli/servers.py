"""The servers a command talks to: those the configuration names, else the
embedded ones. ``hita.embedded`` (the optional extra ``embedded``) is imported
only when a server is to be started, so an installation without it runs
against its own PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hita.config import Config


@contextmanager
def servers(
    config: Config, *, database: bool = True, redis: bool = True, long_lived: bool = False
) -> Iterator[Config]:
    """``config`` with every server URL it needs; see ``embedded_dependencies``."""
    if not config.needs_embedded(database=database, redis=redis):
        yield config
        return
    from hita.embedded import embedded_dependencies  # noqa: PLC0415 - the optional extra

    with embedded_dependencies(
        config, database=database, redis=redis, long_lived=long_lived
    ) as resolved:
        yield resolved
