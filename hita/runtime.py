"""Process-wide tuning for ``hita serve`` (never for apps made in tests).

- ``new_event_loop``: uvloop's loop when the package is installed (the
  ``speed`` extra), else asyncio's own; both serve the same app.
- ``frozen_heap``: a ``cleanup_ctx`` step, appended after the app's own, that
  calls ``gc.freeze()`` once every resource is open: what start-up allocated
  (modules, the OpenAPI document, pools, the router) moves to the permanent
  generation, so the collections that requests trigger no longer walk it.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

log = logging.getLogger(__name__)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        log.info("event loop: asyncio (install the 'speed' extra for uvloop)")
        return asyncio.new_event_loop()
    log.info("event loop: uvloop %s", uvloop.__version__)
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def frozen_heap(app: web.Application) -> AsyncIterator[None]:
    gc.collect()
    gc.freeze()
    log.info("start-up heap frozen: %d objects", gc.get_freeze_count())
    yield
    gc.unfreeze()
