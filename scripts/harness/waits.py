"""Wait until a server answers HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Collection
from typing import Final

import aiohttp

START_TIMEOUT_S: Final = 60.0
POLL_S: Final = 0.1
PROBE_TIMEOUT_S: Final = 2.0


async def until_up(
    url: str,
    *,
    child: subprocess.Popen[bytes] | None = None,
    statuses: Collection[int] = (200,),
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """Return once a GET of ``url`` answers one of ``statuses``; raise if
    ``child`` exits first or nothing answers within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    probe = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=probe) as http:
        while time.monotonic() < deadline:
            if child is not None and child.poll() is not None:
                raise RuntimeError(f"the server behind {url} exited during start-up; see its log")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with http.get(url) as response:
                    if response.status in statuses:
                        return
            await asyncio.sleep(POLL_S)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def wait_up(
    url: str,
    *,
    child: subprocess.Popen[bytes] | None = None,
    statuses: Collection[int] = (200,),
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """``until_up`` for code that runs outside an event loop."""
    asyncio.run(until_up(url, child=child, statuses=statuses, timeout_s=timeout_s))
