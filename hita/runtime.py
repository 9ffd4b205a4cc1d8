"""Process-wide tuning for ``hita serve`` (never for apps made in tests).

- ``frozen_heap``: a ``cleanup_ctx`` step, appended after the app's own, that
  calls ``gc.freeze()`` once every resource is open: what start-up allocated
  (modules, the OpenAPI document, pools, the router) moves to the permanent
  generation, so the collections that requests trigger no longer walk it.
- ``die_with_parent``: a worker or server child ends when its parent does.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import signal
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG: Final = 1


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def frozen_heap(app: web.Application) -> AsyncIterator[None]:
    gc.collect()
    gc.freeze()
    log.info("start-up heap frozen: %d objects", gc.get_freeze_count())
    yield
    gc.unfreeze()
