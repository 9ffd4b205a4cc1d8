"""Process-wide tuning for hita serve."""

from __future__ import annotations

import gc

from aiohttp import web

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
