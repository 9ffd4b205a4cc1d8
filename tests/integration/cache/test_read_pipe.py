"""The read pipe against a real redis-server the test owns (``ReadPipe``):
the reads of one turn share a write, each gets its own reply, in order; an
error reply fails its read only; a caller that leaves leaves the stream in
step; a paused or killed server fails the batch within its timeout, and the
next read opens another connection. A history of random reads, writes and
cancellations is checked against what each read must at least see."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.cache import topology
from hita.cache.connection import create_redis
from hita.cache.read_pipe import ReadPipe, read_pipe_for
from hita.config import load_config
from hita.embedded import EmbeddedRedis

from harness.ports import free_port

pytestmark = pytest.mark.slow

SOCKET_TIMEOUT_S = 0.25  # the service's default command timeout


@dataclass
class Server:
    redis: EmbeddedRedis
    client: Redis
    pipe: ReadPipe


@pytest.fixture
async def server(session_dir: Path) -> AsyncIterator[Server]:
    """A redis-server of the test's own (paused and resumed by its PID), the
    service's client for it, and that client's read pipe."""
    redis = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="r", dir=session_dir)), port=free_port())
    redis.start()
    config = load_config({"HITA_ENV": "test", "REDIS_URL": redis.url}).redis
    client = create_redis(config)
    assert isinstance(client, Redis)
    pipe = read_pipe_for(client)
    assert pipe is not None, "a client of one server has a read pipe"
    try:
        yield Server(redis, client, pipe)
    finally:
        redis.process.resume()
        await pipe.aclose()
        await topology.close(client)
        redis.stop()
        shutil.rmtree(redis.root, ignore_errors=True)


async def test_the_reads_of_one_turn_share_a_write_and_each_gets_its_own_reply(
    server: Server,
) -> None:
    keys = [f"k{i}" for i in range(200)]
    await server.client.mset({key: f"value of {key}" for key in keys})
    gets = [server.pipe.call("GET", key) for key in keys]
    mget = server.pipe.call("MGET", "k1", "missing", "k2")
    replies = await asyncio.gather(*gets, mget)
    assert replies[:-1] == [f"value of {key}".encode() for key in keys]
    assert replies[-1] == await server.client.mget("k1", "missing", "k2")
    assert (server.pipe.reads, server.pipe.batches, server.pipe.connections) == (201, 1, 1)


async def test_an_error_reply_fails_its_own_read_only(server: Server) -> None:
    await server.client.set("a", "1")
    await server.client.hset("h", "f", "v")
    replies = await asyncio.gather(
        server.pipe.call("GET", "a"),
        server.pipe.call("GET", "h"),  # WRONGTYPE
        server.pipe.call("GET", "a"),
        return_exceptions=True,
    )
    assert replies[0] == replies[2] == b"1"
    assert isinstance(replies[1], ResponseError)
    assert await server.pipe.call("GET", "a") == b"1"
    assert server.pipe.connections == 1


async def test_callers_that_leave_leave_the_stream_in_step(server: Server) -> None:
    await server.client.mset({f"k{i}": str(i) for i in range(40)})
    assert await server.pipe.call("GET", "k0") == b"0"  # its connection is open
    server.redis.process.pause()  # the batch goes out and waits for its replies
    tasks = [asyncio.ensure_future(server.pipe.call("GET", f"k{i}")) for i in range(40)]
    await asyncio.sleep(0.05)
    assert server.pipe.batches == 2
    for task in tasks[::2]:
        task.cancel()
    server.redis.process.resume()
    kept = await asyncio.gather(*tasks[1::2])
    assert kept == [str(i).encode() for i in range(1, 40, 2)]
    assert [await server.pipe.call("GET", f"k{i}") for i in (0, 7)] == [b"0", b"7"]
    assert server.pipe.connections == 1  # no reconnection: every reply was read


async def test_a_paused_server_fails_the_batch_in_its_timeout_and_the_next_read_reconnects(
    server: Server,
) -> None:
    await server.client.set("a", "1")
    assert await server.pipe.call("GET", "a") == b"1"
    server.redis.process.pause()
    started = time.monotonic()
    first = [server.pipe.call("GET", "a") for _ in range(5)]
    await asyncio.sleep(0.01)  # on the wire; these queue behind it
    behind = [server.pipe.call("GET", "a") for _ in range(5)]
    outcomes = await asyncio.gather(*first, *behind, return_exceptions=True)
    took = time.monotonic() - started
    assert all(isinstance(o, RedisTimeoutError) for o in outcomes), outcomes
    assert SOCKET_TIMEOUT_S - 0.01 <= took < SOCKET_TIMEOUT_S + 0.2
    server.redis.process.resume()
    assert await server.pipe.call("GET", "a") == b"1"
    assert server.pipe.connections == 2


async def test_a_killed_connection_fails_its_reads_and_the_next_read_opens_another(
    server: Server,
) -> None:
    await server.client.set("a", "1")
    assert await server.pipe.call("GET", "a") == b"1"
    await server.client.client_kill_filter(_type="normal", skipme=True)
    outcomes: list[object] = await asyncio.gather(
        server.pipe.call("GET", "a"), return_exceptions=True
    )
    outcome = outcomes[0]
    # The kill may be noticed by this read (it fails) or before it is sent.
    assert outcome == b"1" or isinstance(outcome, RedisConnectionError), outcome
    assert await server.pipe.call("GET", "a") == b"1"
    assert server.pipe.connections == 2


async def test_a_closed_pipe_refuses_reads(server: Server) -> None:
    await server.pipe.aclose()
    with pytest.raises(RedisConnectionError):
        await server.pipe.call("GET", "a")


# -- a history of random reads, writes and cancellations -----------------------


@dataclass
class History:
    acknowledged: dict[str, int] = field(default_factory=dict)  # key -> last version written
    reads: list[tuple[str, int, asyncio.Future[Any]]] = field(default_factory=list)


KEYS = ("a", "b", "c")
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from(KEYS)),
        st.tuples(st.just("read"), st.sampled_from(KEYS)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("turn"), st.just("")),
    ),
    max_size=60,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=OPS)
async def test_every_read_sees_at_least_what_was_written_before_it_was_asked(
    server: Server, ops: list[tuple[str, object]]
) -> None:
    """Writes go through the pool and are awaited; reads go through the pipe
    and are not. Every read answered must show its own key, at a version no
    older than the last write acknowledged before it was asked."""
    history = History()
    for key in KEYS:
        await server.client.delete(key)
    version = 0
    for op, arg in ops:
        if op == "write":
            version += 1
            await server.client.set(str(arg), f"{arg}:{version}")
            history.acknowledged[str(arg)] = version
        elif op == "read":
            key = str(arg)
            read = asyncio.ensure_future(server.pipe.call("GET", key))
            history.reads.append((key, history.acknowledged.get(key, 0), read))
        elif op == "cancel" and history.reads:
            history.reads[int(str(arg)) % len(history.reads)][2].cancel()
        else:
            await asyncio.sleep(0)
    await asyncio.gather(*(f for _, _, f in history.reads), return_exceptions=True)
    for key, at_least, future in history.reads:
        if future.cancelled():
            continue
        reply = future.result()
        if reply is None:
            assert at_least == 0, f"{key}: nothing, after version {at_least} was written"
            continue
        shown_key, shown = bytes(reply).decode().split(":")
        assert shown_key == key
        assert int(shown) >= at_least, f"{key}: version {shown}, after {at_least}"
    assert await server.pipe.call("GET", "a") == await server.client.get("a")
