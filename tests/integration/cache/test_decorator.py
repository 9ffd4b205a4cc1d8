from __future__ import annotations

import pytest

from hita.cache.client import RedisCache
from hita.cache.codec import MISS
from hita.cache.decorator import DECORATOR_PREFIXES, cached
from hita.cache.keys import KeyBuilder
from tests.integration.cache.conftest import Backend


class UserService:
    def __init__(self, cache: RedisCache) -> None:
        self.cache = cache
        self.calls = 0

    @cached(ttl=300, key_prefix="user_service")
    async def get_user_details(self, user_id: str) -> dict[str, str] | None:
        self.calls += 1
        return {"id": user_id} if user_id != "0000000000" else None

    @cached(
        ttl=60, key_prefix="user_service", key=lambda page, size=20: {"page": page}, negative_ttl=5
    )
    async def page(self, page: int, size: int = 20) -> list[int]:
        self.calls += 1
        return [page] * size


async def test_keys_follow_the_seed_format_and_ignore_self(backend: Backend) -> None:
    service = UserService(backend.make())
    assert await service.get_user_details("5779356081") == {"id": "5779356081"}
    raw = await backend.redis.get("user_service:get_user_details:user_id:5779356081")
    assert raw is not None
    assert "user_service" in DECORATOR_PREFIXES


async def test_positional_and_keyword_calls_share_an_entry(backend: Backend) -> None:
    service = UserService(backend.make())
    await service.get_user_details("5779356081")
    await service.get_user_details(user_id="5779356081")
    assert service.calls == 1
    other = UserService(service.cache)  # another instance, same cache: same key
    await other.get_user_details("5779356081")
    assert other.calls == 0


async def test_a_key_function_and_a_per_call_ttl(backend: Backend) -> None:
    service = UserService(backend.make())
    await service.page(2, cache_ttl=7)  # type: ignore[call-arg]
    await service.page(2, 5)  # same key: the size is not part of it
    assert service.calls == 1
    assert 0 < await backend.redis.pttl("user_service:page:page:2") <= 7000


async def test_the_function_is_called_straight_through_when_redis_is_down(
    fake_backend: Backend,
) -> None:
    service = UserService(fake_backend.make())
    fake_backend.disconnect()
    for _ in range(3):
        assert await service.get_user_details("5779356081") == {"id": "5779356081"}
    assert service.calls == 3


async def test_plain_functions_take_their_cache_as_an_argument(backend: Backend) -> None:
    cache = backend.make()
    calls = []

    @cached(ttl=60, key_prefix="report_service", cache=lambda: cache)
    async def report(day: str) -> int:
        calls.append(day)
        return 0

    assert await report("2024-12-17") == 0
    assert await report(day="2024-12-17") == 0
    assert calls == ["2024-12-17"]
    key = KeyBuilder().function_key("report_service", "report", {"day": "2024-12-17"})
    assert await cache.get(key) == 0
    assert (
        await cache.get(KeyBuilder().function_key("report_service", "report", {"day": "x"})) is MISS
    )


def test_only_coroutine_functions_can_be_decorated() -> None:
    with pytest.raises(TypeError, match="coroutine functions"):
        cached(ttl=1, key_prefix="x")(lambda: 1)  # type: ignore[arg-type,return-value]


async def test_a_method_without_a_cache_is_an_error() -> None:
    class NoCache:
        @cached(ttl=1, key_prefix="x")
        async def f(self) -> int:
            return 1

    with pytest.raises(TypeError, match=r"give self a \.cache"):
        await NoCache().f()
