"""Process-wide tuning for hita serve."""

from __future__ import annotations

import gc

from aiohttp import web

from hita.cache.connection import create_redis
from hita.config import load_config
from hita.runtime import frozen_heap


async def test_the_heap_is_frozen_while_serving_and_thawed_after() -> None:
    assert gc.get_freeze_count() == 0
    steps = frozen_heap(web.Application())
    await anext(steps)
    try:
        assert gc.get_freeze_count() > 0
    finally:
        async for _ in steps:
            pass
    assert gc.get_freeze_count() == 0


def test_redis_connections_parse_with_hiredis() -> None:
    """redis-py picks hiredis's parser by itself when hiredis is installed (the
    service asks for it by requiring redis[hiredis], not by naming a private
    class): this fails loudly if a redis-py release stops doing so."""
    client = create_redis(
        load_config({"HITA_ENV": "test", "REDIS_URL": "redis://127.0.0.1:1"}).redis
    )
    connection = client.connection_pool.make_connection()  # type: ignore[union-attr]
    assert "Hiredis" in type(connection._parser).__name__


def test_the_created_series_switch_is_read_as_prometheus_client_reads_it() -> None:
    """``hita.metrics`` reads PROMETHEUS_DISABLE_CREATED_SERIES itself (the
    library keeps its reading in a private attribute): this fails loudly if a
    prometheus_client release reads it differently."""
    import prometheus_client.metrics

    from hita import metrics

    assert metrics._CREATED_SERIES is prometheus_client.metrics._use_created
