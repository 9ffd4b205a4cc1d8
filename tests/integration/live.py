"""The real app served on 127.0.0.1 from a thread of its own, for clients that
block (schemathesis sends its requests with ``requests``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Final, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestServer

T = TypeVar("T")

HOST: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 30.0
CALL_TIMEOUT_S: Final = 30.0


class LiveServer:
    """``with LiveServer(app) as server:`` serves ``app`` at ``server.base_url``
    (its ``cleanup_ctx`` opens the pools) until the block ends."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.base_url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the live server did not start within {START_TIMEOUT_S} s")
        if self._error is not None:
            raise RuntimeError("the live server failed to start") from self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)
        if self._error is not None:
            raise RuntimeError("the live server failed") from self._error

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop (where its pools live) and return its result."""
        assert self._loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread, never lost in this one
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        server = TestServer(self.app, host=HOST)
        await server.start_server()
        try:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.base_url = str(server.make_url("")).rstrip("/")
            self._ready.set()
            await self._stop.wait()
        finally:
            await server.close()
