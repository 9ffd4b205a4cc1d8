"""Running the app: ``web.run_app``'s job, on a socket already bound, with each
connection read into one shared buffer.

asyncio reads a plain protocol's socket with ``recv(256 KiB)``: a fresh 256 KiB
buffer for every read, shrunk to what arrived. With glibc's mmap threshold
pinned (``hita.malloc``, so the heap does not creep) every such buffer is an
``mmap``, a ``mremap`` and a ``munmap``: three system calls and a page fault
per request, about a tenth of a warm read's CPU time. aiohttp's request
handler is such a plain protocol; ``BufferedReads`` puts asyncio's other
reading interface in front of it (``asyncio.BufferedProtocol``): the kernel
copies into one buffer per process, reused by every connection, and the
handler gets a ``bytes`` of exactly what arrived. Nothing large is allocated
for a read at all, so neither the heap nor the system calls grow with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.web_runner import GracefulExit

READ_BUFFER_BYTES: Final = 64 * 1024  # what one read takes from the kernel at most


class BufferedReads(asyncio.BufferedProtocol):
    """A plain ``asyncio.Protocol`` (``inner``), read through a buffer shared
    by every connection of the process. asyncio fills it and calls
    ``buffer_updated`` in one callback, with nothing in between, so one buffer
    serves every connection of a loop."""

    __slots__ = ("_inner",)

    _buffer: Final = bytearray(READ_BUFFER_BYTES)
    _view: Final = memoryview(_buffer)

    def __init__(self, inner: asyncio.Protocol) -> None:
        self._inner = inner

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._inner.data_received(self._view[:nbytes].tobytes())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class BufferedSockSite(web.SockSite):
    """aiohttp's ``SockSite`` whose connections are read by ``BufferedReads``."""

    __slots__ = ()

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registered with the runner; the server is ours
        handler = self._runner.server
        assert handler is not None, "the runner is set up first"
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: BufferedReads(handler()),
            sock=self._sock,
            ssl=self._ssl_context,
            backlog=self._backlog,
        )


async def _serve(
    app: web.Application,
    sock: socket.socket,
    shutdown_timeout: float,
    announce: Callable[[], None] | None,
) -> None:
    runner = web.AppRunner(
        app, handle_signals=True, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        await BufferedSockSite(runner, sock).start()
        if announce is not None:
            announce()
        await asyncio.Event().wait()  # until SIGINT or SIGTERM (GracefulExit)
    finally:
        await runner.cleanup()


def run(
    app: web.Application,
    sock: socket.socket,
    *,
    shutdown_timeout: float,
    announce: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM, then shut down as
    ``web.run_app`` does: the runner's cleanup (connections given
    ``shutdown_timeout`` to finish, the app's cleanup contexts), every task
    left cancelled, the loop closed."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, sock, shutdown_timeout, announce))
    try:
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError, GracefulExit):
                    loop.run_until_complete(main)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
