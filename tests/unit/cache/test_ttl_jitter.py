"""A fill's TTL with jitter: never longer than asked, never shorter than the
jitter allows, and what Redis is told is what the entry's header says."""

from __future__ import annotations

import dataclasses

import fakeredis
from hypothesis import given
from hypothesis import strategies as st

from hita.cache.client import RedisCache
from hita.cache.keys import KeyBuilder
from tests.conftest import make_config


def cache_with(jitter: float, draw: float) -> RedisCache:
    config = dataclasses.replace(make_config().cache, ttl_jitter=jitter)
    return RedisCache(fakeredis.FakeAsyncRedis(), config, KeyBuilder(), rng=lambda: draw)


@given(
    ttl=st.floats(min_value=0.001, max_value=86_400.0),
    jitter=st.floats(min_value=0.0, max_value=0.5),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_a_fill_s_ttl_stays_within_its_jitter_and_never_exceeds_the_ttl(
    ttl: float, jitter: float, draw: float
) -> None:
    ttl_ms = cache_with(jitter, draw)._ttl_ms(ttl)
    assert ttl_ms <= max(1, round(ttl * 1000))
    assert ttl_ms >= ttl * 1000 * (1 - jitter) - 1
    assert ttl_ms >= 1


def test_no_jitter_is_the_ttl_exactly() -> None:
    assert cache_with(0.0, 0.7)._ttl_ms(180) == 180_000
