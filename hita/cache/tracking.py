"""Redis's server-assisted client-side caching, for the L1 near cache.

Two dedicated connections (RESP2, as Redis 6.2 allows): one SUBSCRIBEd to
``__redis__:invalidate``, and one that turned ``CLIENT TRACKING on REDIRECT
<the first> BCAST PREFIX ...`` on for our key prefixes and then stays open
(tracking lives as long as that connection). Redis queues an invalidation
message on the first connection in the very event-loop turn that changes a
key, before the writer reads its reply.

The subscriber is a plain non-blocking socket, not an asyncio transport, so
``drain()`` can read what the kernel already holds without yielding: the
cache calls it before it serves any L1 hit. It is also read in the background
(``loop.add_reader``). Losing either connection, or an unreadable message,
turns tracking off (the owner flushes L1) until both are back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

import hiredis

from hita.cache.near import REDIS_FLUSHED, TRACKING_LOST

log = logging.getLogger(__name__)

CHANNEL: Final = b"__redis__:invalidate"
RECV_BYTES: Final = 65_536
CONNECT_TIMEOUT_S: Final = 1.0
RECONNECT_FIRST_S: Final = 0.1
RECONNECT_MAX_S: Final = 2.0


class OnKeys(Protocol):
    def __call__(self, keys: list[str] | None, reason: str = ...) -> None:
        """``keys`` changed; None: forget everything, for ``reason`` (an L1 flush reason)."""


def command(*parts: str | bytes) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class TrackingError(ConnectionError):
    pass


class Tracking:
    def __init__(self, url: str, prefixes: list[str], on_keys: OnKeys) -> None:
        self._url = url
        self._prefixes = prefixes
        self._on_keys = on_keys
        self._sub: socket.socket | None = None
        self._ctl: socket.socket | None = None
        self._reader = hiredis.Reader()
        self._lost: asyncio.Event = asyncio.Event()
        self.active = False
        self.connections = 0
        self.messages = 0  # invalidation messages received
        self.client_id: int | None = None  # of the subscriber, for tests (CLIENT KILL)

    # -- life cycle -----------------------------------------------------------------

    async def run_forever(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                await self._connect()
                delay = RECONNECT_FIRST_S
                await self._lost.wait()
            except asyncio.CancelledError:
                raise
            except (OSError, TrackingError, hiredis.ProtocolError) as exc:
                log.warning("cache tracking unavailable: %s", exc.__class__.__name__)
            finally:
                self._close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _connect(self) -> None:
        self._lost = asyncio.Event()
        self._reader = hiredis.Reader()
        sub = await self._open()
        self._sub = sub
        client_id = await self._ask(sub, command("CLIENT", "ID"), self._reader)
        await self._send(sub, command("SUBSCRIBE", CHANNEL))
        confirmed = await self._next_reply(sub, self._reader)
        if not isinstance(confirmed, list) or confirmed[0] != b"subscribe":
            raise TrackingError(f"unexpected answer to SUBSCRIBE: {confirmed!r}")
        ctl = await self._open()
        self._ctl = ctl
        prefixes: list[str] = []
        for prefix in self._prefixes:
            prefixes += ["PREFIX", prefix]
        tracking = ("CLIENT", "TRACKING", "on", "REDIRECT", str(client_id), "BCAST", *prefixes)
        await self._ask(ctl, command(*tracking), hiredis.Reader())
        loop = asyncio.get_running_loop()
        loop.add_reader(sub.fileno(), self._readable)
        loop.add_reader(ctl.fileno(), self._ctl_readable)
        self.client_id = int(client_id)
        self.connections += 1
        self.active = True
        log.info("cache tracking on (L1 near cache in use)")

    def _close(self) -> None:
        was = self.active
        self.active = False
        loop = asyncio.get_running_loop()
        for sock in (self._sub, self._ctl):
            if sock is not None:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(sock.fileno())
                sock.close()
        self._sub = self._ctl = None
        if was:
            log.warning("cache tracking lost: L1 emptied until it is back")
            self._on_keys(None, TRACKING_LOST)

    def lose(self, why: str) -> None:
        if self.active:
            log.warning("cache tracking: %s", why)
        self.active = False
        self._on_keys(None, TRACKING_LOST)
        self._lost.set()

    # -- reading messages ---------------------------------------------------------------

    def drain(self) -> bool:
        """Process every message the kernel already holds; False if tracking is off."""
        if not self.active or self._sub is None:
            return False
        try:
            while True:
                data = self._sub.recv(RECV_BYTES, socket.MSG_DONTWAIT)
                if not data:
                    self.lose("connection closed by Redis")
                    return False
                self._reader.feed(data)
                if len(data) < RECV_BYTES:
                    break
        except BlockingIOError:
            pass
        except OSError as exc:
            self.lose(f"connection failed: {exc.__class__.__name__}")
            return False
        return self._dispatch()

    def _readable(self) -> None:
        self.drain()

    def _ctl_readable(self) -> None:
        assert self._ctl is not None
        try:
            data = self._ctl.recv(RECV_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.lose("the tracking connection was closed")

    def _dispatch(self) -> bool:
        try:
            while (reply := self._reader.gets()) is not False:
                self._message(reply)
        except (hiredis.ProtocolError, hiredis.ReplyError, ValueError, IndexError) as exc:
            self.lose(f"unreadable message: {exc}")
            return False
        return self.active

    def _message(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) != 3 or reply[0] != b"message":
            return  # a subscribe confirmation, or a pong
        self.messages += 1
        keys = reply[2]
        if keys is None:
            self._on_keys(None, REDIS_FLUSHED)  # FLUSHALL / FLUSHDB
        else:
            self._on_keys([k.decode(errors="replace") for k in keys])

    # -- plumbing -----------------------------------------------------------------------

    async def _open(self) -> socket.socket:
        parts = urlsplit(self._url)
        loop = asyncio.get_running_loop()
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = parts.path
        else:
            host, port = parts.hostname or "127.0.0.1", parts.port or 6379
            info = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, _, _, _, address = info[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await loop.sock_connect(sock, address)
                if parts.password:
                    password = unquote(parts.password)
                    user = unquote(parts.username) if parts.username else None
                    auth = ("AUTH", user, password) if user else ("AUTH", password)
                    await self._ask(sock, command(*auth), hiredis.Reader())
        except BaseException:
            sock.close()
            raise
        return sock

    async def _send(self, sock: socket.socket, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(sock, data)

    async def _next_reply(self, sock: socket.socket, reader: hiredis.Reader) -> Any:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            while (reply := reader.gets()) is False:
                data = await loop.sock_recv(sock, RECV_BYTES)
                if not data:
                    raise TrackingError("connection closed during set-up")
                reader.feed(data)
        if isinstance(reply, hiredis.ReplyError):
            raise TrackingError(str(reply))
        return reply

    async def _ask(self, sock: socket.socket, data: bytes, reader: hiredis.Reader) -> Any:
        await self._send(sock, data)
        return await self._next_reply(sock, reader)
