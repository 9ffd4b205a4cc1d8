"""Background tasks that are owned: created in a context, cancelled and awaited on exit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Final

log = logging.getLogger(__name__)

# Python 3.11's asyncio.wait_for (which redis-py uses around socket writes) can
# swallow a cancellation that races its inner task; cancelling again frees it.
RECANCEL_AFTER_S: Final = 0.5


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished, cancelling again if a
    cancellation was swallowed. Its exception, if any, is raised."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_AFTER_S)
    if not task.cancelled():
        task.result()


@asynccontextmanager
async def running(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` as a task for the life of the context; on exit cancel it and
    wait for it, so no task is ever destroyed while pending."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        try:
            await cancel_and_wait(task)
        except asyncio.CancelledError:
            if not task.cancelled():  # we were cancelled ourselves: pass it on
                raise
        except Exception:
            log.exception("background task %s failed", name)
        log.info("background task %s stopped", name)
