"""The fault proxies in a process of their own (scripts/harness/proxy_host.py):
the same modes as in-process (tests/unit/test_fault_proxy.py), in force when
``set_mode`` returns, and what the chaos run asks of them (the connections
open upstream, the one that sent a LISTEN, the loop's lag)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.echo import echo_server, round_trip

from harness.proxy_host import ProxyHost, ProxyHostError

QUIET_S = 0.3  # "nothing arrives" is checked over this long


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async with echo_server() as port:
        yield port


@pytest.fixture
async def host() -> AsyncIterator[ProxyHost]:
    host = ProxyHost()
    await host.start()
    yield host
    await host.close()


async def test_a_remote_proxy_passes_holds_and_gives_back(host: ProxyHost, echo_port: int) -> None:
    proxy = await host.proxy(echo_port, sniff=b"LISTEN ")
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    assert await round_trip(reader, writer, b"LISTEN x;") == b"LISTEN x;"
    upstream = await proxy.upstream_ports()
    assert len(upstream) == 1
    assert await proxy.sniffed() == upstream  # that connection sent the LISTEN

    await proxy.set_mode("blackhole")  # in force once awaited
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), QUIET_S)
    await proxy.set_mode("pass")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"

    await proxy.set_mode("reset")
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await round_trip(reader, writer, b"gone")
    writer.close()
    await proxy.set_mode("pass")
    assert "loop late" in await host.lag()
    await proxy.close()


async def test_two_proxies_are_two_paths(host: ProxyHost, echo_port: int) -> None:
    first, second = await host.proxy(echo_port), await host.proxy(echo_port)
    assert first.port != second.port
    await first.set_mode("blackhole")
    reader, writer = await asyncio.open_connection("127.0.0.1", second.port)
    assert await round_trip(reader, writer, b"other path") == b"other path"
    writer.close()
    await first.set_mode("pass")


async def test_a_bad_command_is_an_error_and_the_host_goes_on(host: ProxyHost) -> None:
    with pytest.raises(ProxyHostError, match="unknown command"):
        await host.call("nonsense", id=1)
    with pytest.raises(ProxyHostError):
        await host.call("mode", id=99, mode="pass")  # no such proxy
    assert "loop late" in await host.lag()


async def test_a_closed_host_refuses_commands() -> None:
    host = ProxyHost()
    await host.start()
    await host.close()
    with pytest.raises(ProxyHostError, match="not running"):
        await host.lag()
