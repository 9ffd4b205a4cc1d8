"""Invalidations WAIT for a replica where one could be promoted: on Sentinel
and on Cluster a WAIT follows the UNLINKs; a master whose replica does not
confirm in time leaves the invalidation unacknowledged (suspect, retried)
without counting against the breaker."""

from __future__ import annotations

import pytest
from redis import Redis as SyncRedis

from hita.cache.breaker import BreakerState
from hita.cache.codec import MISS
from hita.cache.keys import KeyBuilder
from tests.conftest import TEST_CLIENT_TIMEOUT_S, RedisTarget, target_named
from tests.helpers import state_of
from tests.integration.cache.conftest import real_backend_factory
from tests.topologies import Node

pytestmark = pytest.mark.slow

KEY = KeyBuilder().key("user_details", "5779356081")


class WantsOne:
    """A stand-in failover manager that says the master has a replica."""

    def wanted(self, slot: int | None) -> int:
        return 1

    def missed(self) -> None:
        self.misses = getattr(self, "misses", 0) + 1

    def sole_master(self) -> str | None:
        return None


class NoReplicaNamed:
    """A stand-in for the sentinels: the master they name (by run id) has no replica."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.misses = 0

    def wanted(self, slot: int | None) -> int:
        return 0

    def missed(self) -> None:
        self.misses += 1

    def sole_master(self) -> str | None:
        return self.run_id


@pytest.mark.parametrize("named", [True, False])
async def test_a_master_with_no_replica_acknowledges_alone_only_if_it_is_the_one_named(
    redis_url: str, named: bool
) -> None:
    """Not named: a restarted old master that a lagging sentinel still names,
    while the others name the promoted one; what it takes is not acknowledged."""
    backend = await real_backend_factory(RedisTarget("standalone", {"REDIS_URL": redis_url}))
    cache = backend.make(invalidation_budget_s=0.5, replica_wait_s=0.05)
    try:
        run_id = str((await backend.redis.info("server"))["run_id"])
        replicas = NoReplicaNamed(run_id if named else "0" * 40)
        cache.replicas = replicas
        await cache.set(KEY, {"full_name": "Old Name"}, ttl=60)
        assert await cache.delete(KEY) is named
        assert await backend.redis.get(KEY.redis_key) is None  # the server took it either way
        assert cache.pending.covers(KEY) is not named
        assert replicas.misses == (0 if named else 1)
        assert state_of(cache.breaker) is BreakerState.CLOSED
    finally:
        await backend.close()


async def test_a_replica_that_never_confirms_leaves_the_invalidation_unacknowledged(
    redis_url: str,
) -> None:
    """The one server has no replica; told it has one, WAIT finds none."""
    backend = await real_backend_factory(RedisTarget("standalone", {"REDIS_URL": redis_url}))
    cache = backend.make(invalidation_budget_s=0.5, replica_wait_s=0.05)
    try:
        replicas = WantsOne()
        cache.replicas = replicas
        await cache.set(KEY, {"full_name": "Old Name"}, ttl=60)
        assert not await cache.delete(KEY)  # not acknowledged
        assert await backend.redis.get(KEY.redis_key) is None  # the master took it
        assert cache.pending.covers(KEY)  # suspect: never served from Redis
        assert await cache.get(KEY) is MISS
        assert cache.stats.replica_timeouts == 1  # one attempt, not the whole budget
        assert replicas.misses == 1  # the failover manager is asked again
        assert state_of(cache.breaker) is BreakerState.CLOSED  # Redis is well
    finally:
        await backend.close()


def waits(node: Node) -> int:
    with SyncRedis(port=node.port, socket_timeout=TEST_CLIENT_TIMEOUT_S) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


@pytest.mark.parametrize(
    "topology",
    [
        pytest.param("sentinel", marks=pytest.mark.sentinel),
        pytest.param("cluster", marks=pytest.mark.cluster),
    ],
)
async def test_an_invalidation_is_acknowledged_once_a_replica_has_it(
    request: pytest.FixtureRequest, topology: str
) -> None:
    servers = request.getfixturevalue(f"redis_{topology}")
    nodes = list(servers.nodes if topology == "cluster" else servers.data_nodes)
    backend = await real_backend_factory(await target_named(request, topology))
    # A replica on a busy machine may take longer than the default 50 ms to confirm.
    cache = backend.make(invalidation_budget_s=3.0, replica_wait_s=2.0)
    try:
        await cache.set(KEY, {"full_name": "Old Name"}, ttl=60)
        before = sum(waits(n) for n in nodes)
        assert await cache.delete(KEY)
        assert sum(waits(n) for n in nodes) == before + 1  # on the key's master
        assert not cache.pending
        assert cache.stats.replica_timeouts == 0
    finally:
        await backend.close()
