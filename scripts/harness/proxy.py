"""A TCP proxy on 127.0.0.1 whose path can be degraded while it runs.

One proxy carries one client's path to one server (say, one HITA instance's
path to Redis), so a fault can hit that path alone:

- ``pass``: bytes go through as they come;
- ``delay``: every chunk waits ``delay_s`` in each direction (order kept);
- ``blackhole``: nothing goes through and nothing is refused: bytes already
  read wait in the proxy, new connections are accepted and wait too, and all
  of it is delivered once the path is back (as TCP retransmission would);
- ``reset``: every connection is reset (RST, both sides) and new ones are
  reset as they come, until the mode changes.

``sniff``: the proxy remembers which connections sent those bytes to the
server (``sniffed``, by the upstream socket's local port, which is the
``client_port`` PostgreSQL shows in ``pg_stat_activity``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Final, Literal

Mode = Literal["pass", "delay", "blackhole", "reset"]
CHUNK_BYTES: Final = 65_536
HOST: Final = "127.0.0.1"


def abort(writer: asyncio.StreamWriter) -> None:
    """Close a connection with a RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    port: int  # the upstream socket's local port
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        abort(self.client)
        abort(self.server)


class FaultProxy:
    def __init__(self, upstream_port: int, *, sniff: bytes | None = None) -> None:
        self.upstream_port = upstream_port
        self.sniff = sniff
        self.sniffed: set[int] = set()
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.port = 0
        self._path_open = asyncio.Event()
        self._path_open.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        self.mode = mode
        self.delay_s = delay_s
        if mode == "blackhole":
            self._path_open.clear()
        else:
            self._path_open.set()
        if mode == "reset":
            for link in list(self._links):
                link.reset()

    def upstream_ports(self) -> set[int]:
        """Local ports of the connections open to the server now."""
        return {link.port for link in self._links}

    async def close(self) -> None:
        for link in list(self._links):
            link.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _gate(self) -> None:
        """Wait for the path; raise if it is being reset."""
        await self._path_open.wait()
        if self.mode == "reset":
            raise ConnectionResetError("the path is reset")
        if self.mode == "delay":
            await asyncio.sleep(self.delay_s)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._gate()
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            abort(writer)
            return
        link = _Link(writer, up_writer, up_writer.get_extra_info("sockname")[1])
        self._links.add(link)
        link.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, link, outbound=True)),
            asyncio.create_task(self._pump(up_reader, writer, link, outbound=False)),
        ]
        try:
            await asyncio.wait(link.pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            for pump in link.pumps:
                pump.cancel()
            for side in (writer, up_writer):
                side.close()
            await asyncio.gather(*link.pumps, return_exceptions=True)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        link: _Link,
        *,
        outbound: bool,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(CHUNK_BYTES):
                if outbound and self.sniff is not None and self.sniff in data:
                    self.sniffed.add(link.port)
                await self._gate()
                dst.write(data)
                await dst.drain()
