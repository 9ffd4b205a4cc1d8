"""Background tasks that are owned: created in a context, cancelled and awaited on exit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)


@asynccontextmanager
async def running(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` as a task for the life of the context; on exit cancel it and
    wait for it, so no task is ever destroyed while pending."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():  # we were cancelled ourselves: pass it on
                raise
        except Exception:
            log.exception("background task %s failed", name)
        log.info("background task %s stopped", name)
