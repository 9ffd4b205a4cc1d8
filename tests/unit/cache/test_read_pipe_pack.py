"""The read pipe's RESP packing is redis-py's, byte for byte, for the text
arguments the cache sends (keys of any text, empty ones included)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from hita.cache.read_pipe import pack

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
