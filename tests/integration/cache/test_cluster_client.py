"""Closing the bounded Cluster client closes every connection it opened.

redis-py's ``RedisCluster.aclose`` does nothing while the slot map is stale
(as a failover leaves it), and a node that a reload drops keeps whatever
connection a command holding it opens afterwards. Both left sockets open
until the garbage collector found them (a ``ResourceWarning`` the suite
turns into an error, once aiohttp no longer kept old applications alive)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import ClusterNode

from hita.cache import topology
from hita.cache.connection import BoundedRedisCluster, create_redis
from tests.conftest import cluster_target, make_config
from tests.topologies import RedisClusterServers

pytestmark = pytest.mark.cluster


def open_connections(nodes: list[ClusterNode]) -> list[str]:
    return [node.name for node in nodes for conn in node._connections if conn.is_connected]


@pytest.fixture
async def client(redis_cluster: RedisClusterServers) -> AsyncIterator[BoundedRedisCluster]:
    redis = create_redis(make_config(**cluster_target(redis_cluster).env).redis)
    assert isinstance(redis, BoundedRedisCluster)
    try:
        yield redis
    finally:
        await topology.close(redis)


async def test_closing_a_client_whose_slot_map_is_stale_closes_every_connection(
    client: BoundedRedisCluster,
) -> None:
    for i in range(30):  # keys on every primary
        await client.set(f"close-test:{i}", b"x")
    nodes = [
        *client.nodes_manager.nodes_cache.values(),
        *client.nodes_manager.startup_nodes.values(),
    ]
    assert open_connections(nodes)
    client.mark_stale()  # as a connection error or a failover leaves it
    await topology.close(client)
    assert open_connections(nodes) == []


async def test_control_redis_pys_own_close_of_a_stale_client_closes_nothing(
    client: BoundedRedisCluster,
) -> None:
    await client.set("close-test:0", b"x")
    nodes = list(client.nodes_manager.nodes_cache.values())
    client.mark_stale()
    await client.aclose()
    assert open_connections(nodes)  # what close_all is for


async def test_a_connection_to_a_node_a_reload_dropped_is_closed(
    client: BoundedRedisCluster,
) -> None:
    await client.ping()  # the slot map, loaded
    primary = client.get_primaries()[0]
    manager = client.nodes_manager
    # A node the next reload will not find in CLUSTER SLOTS: the same server
    # under a name the cluster does not list, as a node the cluster forgot.
    gone = ClusterNode(primary.host, primary.port, **manager.connection_kwargs)
    gone.name = "forgotten:1"
    manager.nodes_cache[gone.name] = gone
    await client.execute_command("PING", target_nodes=gone)
    client.mark_stale()
    await client.ping()  # the reload drops it
    assert gone.name not in manager.nodes_cache
    assert open_connections([gone]) == []
    # A command that held the node from before the reload (a probe) opens one again.
    await client.execute_command("PING", target_nodes=gone)
    assert open_connections([gone]) == [gone.name]
    await topology.close(client)
    assert open_connections([gone]) == []
