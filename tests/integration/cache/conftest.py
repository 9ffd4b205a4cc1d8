"""One behaviour suite, several backends: fakeredis, and a real Redis as one
server, as a Redis Cluster and as a master found through Sentinel."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import fakeredis
import pytest

from hita.cache import topology
from hita.cache.client import RedisCache
from hita.cache.connection import RedisClient, create_redis
from hita.cache.keys import KeyBuilder
from hita.config import CacheConfig
from tests.conftest import TOPOLOGIES, RedisTarget, make_config, target_named


def cache_config(**changes: object) -> CacheConfig:
    """The test profile's cache settings; invalidations give up after 50 ms
    (not 750) so that tests of an unreachable Redis stay quick."""
    changes.setdefault("invalidation_budget_s", 0.05)
    return dataclasses.replace(make_config().cache, **changes)  # type: ignore[arg-type]


@dataclasses.dataclass
class Backend:
    name: str
    redis: RedisClient
    make: Callable[..., RedisCache]
    caches: list[RedisCache] = dataclasses.field(default_factory=list)
    fake_server: fakeredis.FakeServer | None = None

    def disconnect(self) -> None:
        assert self.fake_server is not None
        self.fake_server.connected = False

    def reconnect(self) -> None:
        assert self.fake_server is not None
        self.fake_server.connected = True

    async def close(self) -> None:
        for cache in self.caches:
            await cache.aclose()
        await topology.close(self.redis)


def fake_backend_factory() -> Backend:
    server = fakeredis.FakeServer()

    def make(**changes: object) -> RedisCache:
        cache = RedisCache(
            fakeredis.FakeAsyncRedis(server=server), cache_config(**changes), KeyBuilder()
        )
        made.caches.append(cache)
        return cache

    made = Backend("fake", fakeredis.FakeAsyncRedis(server=server), make, fake_server=server)
    return made


async def real_backend_factory(target: RedisTarget) -> Backend:
    """Caches over ``target`` (emptied first), each with its own client as an
    instance of the service would have."""
    config = make_config(**target.env)
    await target.empty()

    def make(**changes: object) -> RedisCache:
        cache = RedisCache(create_redis(config.redis), cache_config(**changes), KeyBuilder())
        made.caches.append(cache)
        return cache

    made = Backend(target.name, target.client(), make)
    return made


@pytest.fixture(params=[pytest.param("fake"), *TOPOLOGIES])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "fake":
        made = fake_backend_factory()
    else:
        made = await real_backend_factory(await target_named(request, request.param))
    yield made
    await made.close()


@pytest.fixture
async def fake_backend() -> AsyncIterator[Backend]:
    """fakeredis, whose server can be disconnected on demand."""
    made = fake_backend_factory()
    yield made
    made.reconnect()
    await made.close()
