"""``hita.api.serving``: every connection read through one shared buffer.

The answers are those of aiohttp's own reading (pipelined requests, bodies
larger than the buffer, requests cut anywhere and interleaved across
connections), and a read allocates no large buffer (the reason for it)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hita.api.serving import READ_BUFFER_BYTES, BufferedReads, BufferedSockSite

Site = Callable[[web.BaseRunner, socket.socket], web.BaseSite]


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=f"{request.path} {len(body)} {hashlib.sha256(body).hexdigest()}")


@asynccontextmanager
async def serving(site: Site = BufferedSockSite) -> AsyncIterator[int]:
    app = web.Application(client_max_size=4 * READ_BUFFER_BYTES)
    app.router.add_route("*", "/{name}", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await site(runner, sock).start()
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()
        sock.close()


def _request(name: str, body: bytes = b"") -> bytes:
    head = f"POST /{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _expected(name: str, body: bytes = b"") -> str:
    return f"/{name} {len(body)} {hashlib.sha256(body).hexdigest()}"


class Client:
    """One connection, read with ``sock_recv_into`` (no buffer allocated per
    read: the allocations measured are the server's)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray(16 * 1024)
        self.pending = b""

    @classmethod
    async def to(cls, port: int) -> Client:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def _more(self) -> None:
        n = await self.loop.sock_recv_into(self.sock, self.buffer)
        assert n, "the server closed the connection"
        self.pending += self.buffer[:n]

    async def answers(self, count: int) -> list[str]:
        found = []
        for _ in range(count):
            while b"\r\n\r\n" not in self.pending:
                await self._more()
            head, _, self.pending = self.pending.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(self.pending) < length:
                await self._more()
            found.append(self.pending[:length].decode())
            self.pending = self.pending[length:]
        return found

    def close(self) -> None:
        self.sock.close()


async def test_pipelined_requests_and_a_body_larger_than_the_buffer() -> None:
    big = bytes(range(256)) * (3 * READ_BUFFER_BYTES // 256 + 7)
    async with serving() as port:
        client = await Client.to(port)
        await client.send(_request("a") + _request("big", big) + _request("c", b"xyz"))
        assert await client.answers(3) == [
            _expected("a"),
            _expected("big", big),
            _expected("c", b"xyz"),
        ]
        client.close()


async def test_the_served_connections_are_read_by_buffered_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[asyncio.BaseProtocol] = []
    original = BufferedReads.connection_made

    def spy(self: BufferedReads, transport: asyncio.BaseTransport) -> None:
        made.append(transport.get_protocol())
        original(self, transport)

    monkeypatch.setattr(BufferedReads, "connection_made", spy)
    async with serving() as port:
        client = await Client.to(port)
        await client.send(_request("a"))
        assert await client.answers(1) == [_expected("a")]
        client.close()
    assert len(made) == 1
    assert isinstance(made[0], BufferedReads)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bodies=st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=40),
    order=st.randoms(use_true_random=False),
)
def test_requests_cut_anywhere_and_interleaved_across_connections(
    bodies: list[bytes], cuts: list[int], order: object
) -> None:
    """Three connections each send the same requests, cut into pieces at the
    drawn sizes; the pieces of all three go out interleaved in a drawn order,
    so the shared buffer is refilled by one connection between another's
    pieces. Each connection gets exactly its answers."""
    stream = b"".join(_request(f"r{i}", body) for i, body in enumerate(bodies))
    pieces: list[bytes] = []
    at, step = 0, 0
    while at < len(stream):
        size = cuts[step % len(cuts)]
        pieces.append(stream[at : at + size])
        at, step = at + size, step + 1

    async def scenario() -> None:
        async with serving() as port:
            conns = [await Client.to(port) for _ in range(3)]
            try:
                sends = [c for c in range(3) for _ in pieces]
                order.shuffle(sends)  # type: ignore[attr-defined]
                next_piece = [0, 0, 0]
                for c in sends:  # each connection's pieces in order, interleaved anyhow
                    await conns[c].send(pieces[next_piece[c]])
                    next_piece[c] += 1
                    await asyncio.sleep(0)
                want = [_expected(f"r{i}", body) for i, body in enumerate(bodies)]
                async with asyncio.timeout(10):
                    for client in conns:
                        assert await client.answers(len(bodies)) == want
            finally:
                for client in conns:
                    client.close()

    asyncio.run(scenario())


async def _peak_per_read(site: Site) -> int:
    """The largest Python allocation made while serving small requests: asyncio
    reads a plain protocol into a fresh 256 KiB buffer each time."""
    async with serving(site) as port:
        client = await Client.to(port)
        await client.send(_request("warm"))
        await client.answers(1)
        peak = 0
        tracemalloc.start()
        try:
            for _ in range(50):
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                await client.send(_request("a", b"x" * 100))
                await client.answers(1)
                peak = max(peak, tracemalloc.get_traced_memory()[1] - before)
        finally:
            tracemalloc.stop()
        client.close()
    return peak


async def test_a_read_allocates_no_large_buffer() -> None:
    assert await _peak_per_read(BufferedSockSite) < 64 * 1024


async def test_control_aiohttp_s_own_site_allocates_a_large_buffer_per_read() -> None:
    assert await _peak_per_read(web.SockSite) >= 256 * 1024
