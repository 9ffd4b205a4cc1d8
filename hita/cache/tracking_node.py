"""One Redis server's client-side-caching connections, for L1.

Two connections (RESP2): one SUBSCRIBEd to ``__redis__:invalidate``, one that
turned ``CLIENT TRACKING on REDIRECT <the first> BCAST PREFIX ...`` on and
then stays open (tracking lives as long as it does). Redis queues an
invalidation message on the first in the very event-loop turn that changes a
key, before the writer reads its reply.

Both are redis-py connections made from the command connections' settings
(TLS, user and password included), opened and set up in a thread; then their
sockets are read without blocking and without yielding, so ``drain()`` takes
in what the kernel already holds before the cache serves an L1 hit. The
subscriber is PINGed every ``PING_S`` (by the drain of a read when one is
due, else by a timer): a connection that stops answering (a half-open socket,
a paused server) counts as lost after ``PONG_WITHIN_S``.

L1 serves only while the last PONG taken in answers a PING sent at most
``L1_FRESH_MS`` ago (``drain`` says False otherwise). Redis sends an
invalidation and a PONG in order on one connection, so that PONG says every
invalidation Redis queued before that PING arrived has been applied: a write
acknowledged more than ``L1_FRESH_MS`` before a read is never missed by it,
however slow or cut this node's path is (the invalidations delayed or lost,
the writer's own path fast). Writers wait that long after Redis acknowledged
their invalidation before they answer (``hita.api.invalidation``), which
closes the window (docs/cache.md, L1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import hiredis
from redis.connection import AbstractConnection
from redis.exceptions import RedisError

from hita.constants import L1_FRESH_MS

log = logging.getLogger(__name__)

CHANNEL: Final = b"__redis__:invalidate"
RECV_BYTES: Final = 65_536
SETUP_TIMEOUT_S: Final = 1.0  # connect, TLS, AUTH and the set-up commands, each
PING_S: Final = 0.005  # the subscriber is PINGed this often while reads drain it
IDLE_PING_S: Final = 0.02  # and at least this often by a timer (fresh while idle too)
FRESH_S: Final = L1_FRESH_MS / 1000  # L1 serves while its last PONG answers a PING this recent
PONG_WITHIN_S: Final = 1.0  # a PING unanswered this long loses the connection
_AGAIN: Final = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

Opener = Callable[[], AbstractConnection]  # an unopened connection to the node
KeysListener = Callable[[list[str] | None], None]  # None: every key (FLUSHALL, FLUSHDB)


def command(*parts: str | bytes) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class TrackingError(ConnectionError):
    pass


def _poller(sock: socket.socket) -> Callable[[int], list[tuple[int, int]]]:
    """``poll`` of ``sock`` alone: a readiness check for the subscriber, which
    also reports a hang-up or an error (then the ``recv`` sees it)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return poller.poll


def raw_socket(connection: AbstractConnection) -> socket.socket:
    """The socket under an open redis-py connection (a plain, unix or TLS one).
    redis-py keeps it behind ``_get_socket``; tests/integration/cache/test_tracking.py
    fails loudly if that changes."""
    sock = connection._get_socket()
    if sock is None:
        raise TrackingError("the connection has no socket")
    return sock


class NodeTracking:
    """Tracking on one node. ``active`` while both connections are up;
    ``on_lost`` is called once per loss (the owner flushes L1)."""

    def __init__(
        self,
        name: str,
        opener: Opener,
        prefixes: Sequence[str],
        on_keys: KeysListener,
        on_lost: Callable[[NodeTracking, str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._opener = opener
        self._prefixes = list(prefixes)
        self._on_keys = on_keys
        self._on_lost = on_lost
        self._clock = clock
        self._conns: list[AbstractConnection] = []
        self._sub: socket.socket | None = None
        self._readable: Callable[[int], list[tuple[int, int]]] | None = None  # poll(0), plain
        self._ctl: socket.socket | None = None
        self._reader = hiredis.Reader()
        self._lost = asyncio.Event()
        self._ping_sent: float | None = None  # the PING not answered yet
        self._pinged = 0.0  # when the last PING was sent
        self._answered = float("-inf")  # when the PING of the last PONG taken in was sent
        self.active = False
        self.connections = 0
        self.messages = 0  # invalidation messages received
        self.late_reads = 0  # L1 reads refused: no PONG to a PING sent within FRESH_S
        self.client_id: int | None = None  # of the subscriber, for tests (CLIENT KILL)

    # -- life cycle --------------------------------------------------------------

    async def connect(self) -> None:
        """Open and set up both connections (in a thread), then read them here."""
        self._lost = asyncio.Event()
        self._reader = hiredis.Reader()
        loop = asyncio.get_running_loop()
        setup = loop.run_in_executor(None, self._setup)
        try:
            conns, client_id = await asyncio.shield(setup)
        except asyncio.CancelledError:
            setup.add_done_callback(_close_late)
            raise
        self._conns = conns
        self._sub, self._ctl = (raw_socket(c) for c in conns)
        for sock in (self._sub, self._ctl):
            sock.setblocking(False)
        self._readable = None if isinstance(self._sub, ssl.SSLSocket) else _poller(self._sub)
        loop.add_reader(self._sub.fileno(), self.drain)
        loop.add_reader(self._ctl.fileno(), self._ctl_readable)
        self.client_id = client_id
        self._ping_sent = None
        self._pinged = 0.0
        self._answered = float("-inf")
        self.connections += 1
        self.active = True
        self._keepalive()  # L1 serves from this connection once its first PONG is in

    def _setup(self) -> tuple[list[AbstractConnection], int]:
        """Blocking: the subscriber, then tracking redirected to it, on a master."""
        conns: list[AbstractConnection] = []
        try:
            sub = self._opener()
            conns.append(sub)
            sub.connect()  # type: ignore[no-untyped-call]
            client_id = int(_ask(sub, "CLIENT", "ID"))
            # Read with our own parser from here on (redis-py's would take the
            # confirmation for a push message and wait for another answer).
            sock = raw_socket(sub)
            sock.sendall(command("SUBSCRIBE", CHANNEL))
            while (confirmed := self._reader.gets()) is False:
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise TrackingError("connection closed during set-up")
                self._reader.feed(data)
            if not isinstance(confirmed, list) or confirmed[0] != b"subscribe":
                raise TrackingError(f"unexpected answer to SUBSCRIBE: {confirmed!r}")
            ctl = self._opener()
            conns.append(ctl)
            ctl.connect()  # type: ignore[no-untyped-call]
            role = _ask(ctl, "ROLE")
            if not isinstance(role, list) or role[0] != b"master":
                raise TrackingError(f"{self.name} is not a master")
            prefixes: list[str] = []
            for prefix in self._prefixes:
                prefixes += ["PREFIX", prefix]
            _ask(ctl, "CLIENT", "TRACKING", "on", "REDIRECT", str(client_id), "BCAST", *prefixes)
        except BaseException:
            for conn in conns:
                conn.disconnect()  # type: ignore[no-untyped-call]
            raise
        return conns, client_id

    async def until_lost(self) -> None:
        """Keep the subscriber PINGed until either connection is lost."""
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_PING_S):
                    await self._lost.wait()
            self._keepalive()

    def close(self) -> None:
        self.active = False
        loop = asyncio.get_running_loop()
        for sock in (self._sub, self._ctl):
            if sock is not None:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(sock.fileno())
        for conn in self._conns:
            with contextlib.suppress(Exception):
                conn.disconnect()  # type: ignore[no-untyped-call]
        self._conns, self._sub, self._ctl = [], None, None
        self._readable = None

    def lose(self, why: str) -> None:
        was, self.active = self.active, False
        self._lost.set()
        if was:
            self._on_lost(self, why)

    # -- reading messages ------------------------------------------------------------

    def drain(self) -> bool:
        """Process every message the kernel already holds; False if tracking is off.

        A plain socket is asked first whether it holds anything (``poll`` with
        no wait, about half the cost of a ``recv`` that fails with EAGAIN: the
        common case of a hit with no message waiting). A TLS socket is always
        read: its SSL object may hold decrypted bytes the kernel knows nothing of."""
        sock = self._sub
        if not self.active or sock is None:
            return False
        if self._readable is not None and not self._readable(0):
            return self._dispatch() and self._fresh()
        try:
            while True:
                data = sock.recv(RECV_BYTES)
                if not data:
                    self.lose("connection closed by Redis")
                    return False
                self._reader.feed(data)
        except _AGAIN:
            pass
        except OSError as exc:
            self.lose(f"connection failed: {exc.__class__.__name__}")
            return False
        return self._dispatch() and self._fresh()

    def _fresh(self) -> bool:
        """Whether the last PONG taken in answers a PING sent within
        ``FRESH_S``: then every invalidation Redis queued before that PING
        arrived has been applied. Sends the next PING when one is due."""
        self._keepalive()
        if not self.active:
            return False
        if self._clock() - self._answered <= FRESH_S:
            return True
        self.late_reads += 1
        return False

    def _ctl_readable(self) -> None:
        sock = self._ctl
        if sock is None:
            return
        try:
            data = sock.recv(RECV_BYTES)
        except _AGAIN:
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
        if isinstance(reply, list) and reply and reply[0] == b"pong":
            if self._ping_sent is not None:
                self._answered = self._ping_sent
            self._ping_sent = None
            return
        if not isinstance(reply, list) or len(reply) != 3 or reply[0] != b"message":
            return  # a subscribe confirmation
        self.messages += 1
        keys = reply[2]
        self._on_keys(None if keys is None else [k.decode(errors="replace") for k in keys])

    def _keepalive(self) -> None:
        """A PING every ``PING_S`` (one at a time); lost when the last one is
        unanswered too long."""
        if not self.active or self._sub is None:
            return
        now = self._clock()
        if self._ping_sent is not None:
            if now - self._ping_sent > PONG_WITHIN_S:
                self.lose(f"no PONG within {PONG_WITHIN_S:.1f} s")
            return
        if now - self._pinged < PING_S:
            return
        try:
            self._sub.send(command("PING"))
        except _AGAIN:
            return
        except OSError as exc:
            self.lose(f"connection failed: {exc.__class__.__name__}")
            return
        self._ping_sent = self._pinged = now


def _ask(conn: AbstractConnection, *args: str | bytes) -> Any:
    conn.send_command(*args)  # type: ignore[no-untyped-call]
    reply = conn.read_response()
    if isinstance(reply, RedisError):
        raise TrackingError(str(reply))
    return reply


def _close_late(setup: asyncio.Future[tuple[list[AbstractConnection], int]]) -> None:
    """A set-up whose waiter was cancelled: close what it opened."""
    if not setup.cancelled() and setup.exception() is None:
        for conn in setup.result()[0]:
            conn.disconnect()  # type: ignore[no-untyped-call]
