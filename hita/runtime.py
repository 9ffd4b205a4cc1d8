"""Process-wide tuning for ``hita serve`` (never for apps made in tests).

- ``frozen_heap``: a ``cleanup_ctx`` step, appended after the app's own, that
  calls ``gc.freeze()`` once every resource is open: what start-up allocated
  (modules, the OpenAPI document, pools, the router) moves to the permanent
  generation, so the collections that requests trigger no longer walk it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator

from aiohttp import web

log = logging.getLogger(__name__)


async def frozen_heap(app: web.Application) -> AsyncIterator[None]:
    gc.collect()
    gc.freeze()
    log.info("start-up heap frozen: %d objects", gc.get_freeze_count())
    yield
    gc.unfreeze()
