"""The shortcuts of the warm read path give what the general code gives."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from hita.cache.client import RedisCache
from hita.cache.keys import MAX_PART_CHARS, Key, KeyBuilder, key_part
from hita.constants import USER_DETAILS
from hita.metrics import LATENCY_BUCKETS_S, Metrics
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
def test_a_one_part_key_is_the_general_builder_s(prefix: str, user_id: str) -> None:
    """``KeyBuilder.key`` keeps a safe part as it is without ``key_part``: the same key."""
    general = Key(USER_DETAILS, f"{prefix}{USER_DETAILS}:{key_part(user_id)}")
    assert KeyBuilder(prefix).key(USER_DETAILS, user_id) == general
    assert cache_keys(prefix).user_details(user_id) == general


def prometheus_reference() -> tuple[CollectorRegistry, Callable[[str, str, int, float], None]]:
    """The request metrics as prometheus_client's own Counter and Histogram."""
    registry = CollectorRegistry()
    requests = Counter(
        "hita_http_requests",
        "HTTP requests, per method, route template and status",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "hita_http_request_duration_seconds",
        "HTTP request latency per route template",
        ["method", "route"],
        buckets=LATENCY_BUCKETS_S,
        registry=registry,
    )

    def observe(method: str, route: str, status: int, seconds: float) -> None:
        requests.labels(method, route, str(status)).inc()
        latency.labels(method, route).observe(seconds)

    return registry, observe


def without_created_values(text: bytes) -> str:
    return re.sub(r"^(\S+_created\{.*\}) \S+$", r"\1 T", text.decode(), flags=re.MULTILINE)


def test_request_metrics_expose_what_prometheus_client_s_own_would() -> None:
    rng = random.Random(7)
    registry, observe = prometheus_reference()
    metrics = Metrics()
    assert without_created_values(generate_latest(registry)) in without_created_values(
        metrics.render()
    )
    routes = ["/v1.0/user/{user_id}", "unmatched", "/v1.0/health", "/metrics"]
    edges = [*LATENCY_BUCKETS_S, 0.0, 7.5, 1e-9]
    for n in range(3_000):
        method = rng.choice(["GET", "GET", "POST", "DELETE"])
        route, status = rng.choice(routes), rng.choice([200, 200, 304, 401, 404, 503])
        seconds = edges[n % len(edges)] if n % 5 == 0 else rng.expovariate(100)
        observe(method, route, status, seconds)
        metrics.observe_request(method, route, status, seconds)
    expected = without_created_values(generate_latest(registry))
    rendered = without_created_values(metrics.render())
    assert expected in rendered
    assert rendered.startswith(expected)  # the request metrics come first, as before
