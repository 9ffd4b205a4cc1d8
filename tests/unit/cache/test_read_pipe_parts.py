"""Parts of the read pipe that need no server: its RESP packing is
redis-py's, byte for byte, for the text arguments the cache sends; and
whatever its connection raises reaches the callers as a Redis error (the
cache's outage path), never as another exception (a 500)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.cache.read_pipe import ReadPipe, pack

COMMANDS = st.lists(
    st.tuples(st.sampled_from(["GET", "MGET"]), st.lists(st.text(), min_size=1, max_size=5)).map(
        lambda c: (c[0], *c[1])
    ),
    min_size=1,
    max_size=8,
)


@given(commands=COMMANDS)
def test_pack_is_redis_pys_packing(commands: list[tuple[str, ...]]) -> None:
    redis_py = b"".join(Connection().pack_commands(commands))
    assert pack(commands) == redis_py


class FailingConnection:
    """A connection whose opening raises ``error``."""

    is_connected = False
    socket_timeout = 0.25

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def connect(self) -> None:
        raise self.error

    async def disconnect(self, nowait: bool = False) -> None:
        return None


class Pool:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def make_connection(self) -> FailingConnection:
        return FailingConnection(self.error)


@pytest.mark.parametrize(
    ("raised", "seen"),
    [
        (RedisTimeoutError("slow"), RedisTimeoutError),
        (RedisConnectionError("refused"), RedisConnectionError),
        (RuntimeError("a driver's bug"), RedisConnectionError),
        (AttributeError("'NoneType' object has no attribute 'write'"), RedisConnectionError),
    ],
)
async def test_what_the_connection_raises_reaches_every_caller_as_a_redis_error(
    raised: BaseException, seen: type[BaseException]
) -> None:
    pipe = ReadPipe(Pool(raised))  # type: ignore[arg-type]
    outcomes: list[Any] = await asyncio.gather(
        *(pipe.call("GET", f"k{i}") for i in range(3)), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [seen] * 3
    assert len({id(o) for o in outcomes}) == 3  # each caller its own instance
    await pipe.aclose()
