"""L1 follows the topology through a failover the operator asks for (the old
master stays up, as a replica): on Sentinel (``SENTINEL FAILOVER``) tracking
moves to the new master on the sentinels' ``+switch-master``; on a Cluster
(``CLUSTER FAILOVER`` on a replica) the promoted replica is tracked once it is
listed. Either way L1 is emptied (``topology_changed``), serves again, and a
write through the other instance is seen at once."""

from __future__ import annotations

import asyncio

import pytest
from pytest_aiohttp import AiohttpClient

from hita.appkeys import CACHE, CACHE_KEYS
from hita.cache.near import TOPOLOGY
from hita.cache.sentinel_watch import SentinelWatch
from hita.domain.roles import Role
from tests.conftest import RedisTarget, cluster_target, sentinel_target
from tests.integration.conftest import Account, World, until
from tests.integration.test_near_cache import l1_hits, warm
from tests.integration.test_near_cache_topologies import renamed_and_read, two_worlds_on
from tests.topologies import Node, RedisClusterServers, SentinelServers, client

pytestmark = pytest.mark.slow

PROMOTION_S = 30.0


def tracked(world: World) -> list[str]:
    tracking = world.app[CACHE].tracking
    assert tracking is not None
    return tracking.node_names if tracking.active else []


async def after_the_failover(a: World, b: World, admin: Account, guest: Account, new: Node) -> None:
    """B tracks ``new``, emptied L1 for it, serves from L1 again and shows
    A's writes at once."""
    await until(lambda: new.address in tracked(b), "B never tracked the new master", PROMOTION_S)
    near = b.app[CACHE].near
    assert near is not None
    assert near.stats.flush_reasons[TOPOLOGY] >= 1
    shown = [await renamed_and_read(a, b, admin, guest, n) for n in range(1, 11)]
    assert [s for n, s in enumerate(shown, 1) if s != f"Name {n}"] == []
    path = f"/v1.0/user/{guest.id}"
    await warm(b, admin, path)
    assert await l1_hits(b, admin, path) == 2


async def warmed(
    aiohttp_client: AiohttpClient, database_url: str, target: RedisTarget
) -> tuple[World, World, Account, Account]:
    """Two instances on ``target``, an admin, and a guest B holds in L1."""
    a, b = await two_worlds_on(aiohttp_client, database_url, target)
    admin = await a.make_user(Role.ADMIN)
    guest = await a.make_user()
    await warm(b, admin, f"/v1.0/user/{guest.id}")
    return a, b, admin, guest


@pytest.mark.sentinel
async def test_l1_follows_a_sentinel_switch_of_master(
    aiohttp_client: AiohttpClient, clean_database: str, own_sentinel: SentinelServers
) -> None:
    a, b, admin, guest = await warmed(aiohttp_client, clean_database, sentinel_target(own_sentinel))
    assert tracked(b) == [own_sentinel.master.address]
    with client(own_sentinel.sentinels[0].port) as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", own_sentinel.master_name)
    replica = own_sentinel.replica
    await until(lambda: own_sentinel.promoted(replica), "no promotion", PROMOTION_S)
    # The old master stays a master until the sentinels reconfigure it (about
    # 10 s here); till it replicates, no invalidation is acknowledged (the
    # writes take the durable path): wait for it, so that L1 fills again.
    await asyncio.to_thread(own_sentinel.wait_healthy)
    await after_the_failover(a, b, admin, guest, replica)
    watch = b.app[CACHE].replicas
    assert isinstance(watch, SentinelWatch)
    assert watch.switches >= 1  # B heard the sentinels say so


@pytest.mark.cluster
async def test_l1_follows_a_cluster_failover(
    aiohttp_client: AiohttpClient, clean_database: str, own_cluster: RedisClusterServers
) -> None:
    a, b, admin, guest = await warmed(aiohttp_client, clean_database, cluster_target(own_cluster))
    key = a.app[CACHE_KEYS].user_details(guest.id).redis_key
    primary = own_cluster.node(own_cluster.slot_owner(key))
    replica = own_cluster.replica_of(primary)
    with client(replica.port) as c:
        c.execute_command("CLUSTER", "FAILOVER")
    await until(lambda: own_cluster.promoted(replica), "no promotion", PROMOTION_S)
    await after_the_failover(a, b, admin, guest, replica)
