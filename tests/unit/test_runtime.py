"""Process-wide tuning for hita serve."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys

import pytest
from aiohttp import web

from hita.runtime import frozen_heap, new_event_loop


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


def test_uvloop_when_installed_and_asyncio_when_not(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = importlib.util.find_spec("uvloop") is not None
    loop = new_event_loop()
    try:
        assert (type(loop).__module__.split(".")[0] == "uvloop") is installed
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    loop = new_event_loop()
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)  # asyncio's own, not uvloop's
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()
