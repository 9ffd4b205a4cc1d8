"""The shortcuts of the warm read path give what the general code gives."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hita.api.auth import PUBLIC_PATHS, is_public
from hita.cache.client import RedisCache
from hita.cache.keys import MAX_PART_CHARS, KeyBuilder
from hita.constants import USER_DETAILS
from hita.services.cache_keys import CacheKeys


def cache_keys(prefix: str) -> CacheKeys:
    return CacheKeys(cast(RedisCache, SimpleNamespace(keys=KeyBuilder(prefix))))


@pytest.mark.parametrize("prefix", ["", "hita:"])
@given(
    user_id=st.one_of(
        st.text(),
        st.text(alphabet="0123456789", min_size=1, max_size=20),
        st.text(alphabet="abcXYZ09_.-", min_size=MAX_PART_CHARS - 2, max_size=MAX_PART_CHARS + 2),
        st.sampled_from(["", "5779356081", "a*b", "{x}", "12\n", "é1", "1" * 200]),
    )
)
def test_user_details_keys_are_the_builder_s(prefix: str, user_id: str) -> None:
    assert cache_keys(prefix).user_details(user_id) == KeyBuilder(prefix).key(USER_DETAILS, user_id)


@given(
    path=st.one_of(
        st.text(),
        st.sampled_from(
            [
                "/metrics",
                "/metrics\n",
                "/metrics/",
                "/v1.0/health",
                "/v1.0/health/live",
                "/v1.0/healthz",
                "/v1.0/auth/login",
                "/v1.0/cache/health",
                "/v1.0/cache/health/detailed",
                "/v1.0/openapi.json",
                "/v1.0/openapiXjson",
                "/v1.0/user/5779356081",
                "",
            ]
        ),
    )
)
def test_public_paths_are_those_of_the_path_patterns(path: str) -> None:
    assert is_public(path) == any(re.match(p, path) for p in PUBLIC_PATHS)
