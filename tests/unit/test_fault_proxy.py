"""The chaos run's fault proxy (scripts/harness/proxy.py) in front of an echo
server: each mode does to the path what it says, and gives it back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.echo import echo_server, round_trip

from harness.proxy import FaultProxy

QUIET_S = 0.3  # "nothing arrives" is checked over this long


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with echo_server() as port:
        proxy = FaultProxy(port, sniff=b"LISTEN ")
        await proxy.start()
        yield proxy
        await proxy.close()


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def test_pass_carries_bytes_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await round_trip(reader, writer, b"ping") == b"ping"
    writer.close()


async def test_delay_holds_each_direction(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"warm")
    proxy.set_mode("delay", 0.1)
    started = time.monotonic()
    assert await round_trip(reader, writer, b"slow") == b"slow"
    assert time.monotonic() - started >= 0.2  # 0.1 s out, 0.1 s back
    writer.close()


async def test_blackhole_holds_bytes_until_the_path_is_back(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"before")
    proxy.set_mode("blackhole")
    writer.write(b"held")
    await writer.drain()
    late_reader, late_writer = await connect(proxy)  # accepted, but goes nowhere yet
    late_writer.write(b"late")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), QUIET_S)
    proxy.set_mode("pass")
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"
    assert await asyncio.wait_for(late_reader.readexactly(4), 2) == b"late"
    writer.close()
    late_writer.close()


async def test_reset_drops_every_connection_and_refuses_new_ones(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"before")
    proxy.set_mode("reset")
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await round_trip(reader, writer, b"after")
    new_reader, new_writer = await connect(proxy)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await round_trip(new_reader, new_writer, b"again")
    proxy.set_mode("pass")
    reader, writer = await connect(proxy)
    assert await round_trip(reader, writer, b"back") == b"back"
    writer.close()


async def test_sniffed_connections_are_named_by_their_upstream_port(proxy: FaultProxy) -> None:
    quiet_reader, quiet_writer = await connect(proxy)
    await round_trip(quiet_reader, quiet_writer, b"SELECT 1")
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b'LISTEN "hita_cache"')
    assert len(proxy.upstream_ports()) == 2
    assert len(proxy.sniffed) == 1
    assert proxy.sniffed < proxy.upstream_ports()
    writer.close()
    quiet_writer.close()
