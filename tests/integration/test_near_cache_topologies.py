"""L1 on Sentinel and on Redis Cluster: a warm read costs no Redis command on
any data node, and a write through one instance is seen at once through the
other, whose reads L1 serves."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pytest_aiohttp import AiohttpClient
from redis import Redis as SyncRedis

from hita.app import create_app
from hita.appkeys import CACHE
from hita.domain.roles import Role
from hita.services.tokens import Tokens
from tests.conftest import TEST_CLIENT_TIMEOUT_S, RedisTarget, make_config, target_named
from tests.integration.conftest import Account, World
from tests.integration.test_near_cache import get, l1_hits, tracking_on, warm
from tests.topologies import Node

pytestmark = pytest.mark.slow

# What the topology's own processes send the data nodes on their own
# schedule, whatever the application does: the sentinels' monitoring (PING,
# INFO, PUBLISH of their hellos), replication (REPLCONF ACK; a master's PING
# to its replicas), and L1's keepalive (a PING on its subscriber every 5 to 20 ms).
BACKGROUND = frozenset({"ping", "info", "publish", "replconf"})

TOPOLOGY_PARAMS = [
    pytest.param("sentinel", marks=pytest.mark.sentinel),
    pytest.param("cluster", marks=pytest.mark.cluster),
]


def data_nodes(request: pytest.FixtureRequest, name: str) -> list[Node]:
    if name == "cluster":
        return list(request.getfixturevalue("redis_cluster").nodes)
    return list(request.getfixturevalue("redis_sentinel").data_nodes)


class Counts:
    """INFO commandstats of every data node, through one connection each (a
    new connection's own HELLO and CLIENT SETINFO would count otherwise)."""

    def __init__(self, nodes: list[Node]) -> None:
        self._clients = {
            n.port: SyncRedis(port=n.port, socket_timeout=TEST_CLIENT_TIMEOUT_S) for n in nodes
        }

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def calls(self) -> dict[int, dict[str, int]]:
        return {
            port: {
                k.removeprefix("cmdstat_"): int(v["calls"])
                for k, v in c.info("commandstats").items()
            }
            for port, c in self._clients.items()
        }

    def since(self, before: dict[int, dict[str, int]]) -> dict[int, set[str]]:
        """Per node, the commands run since ``before`` but ``BACKGROUND`` and INFO."""
        return {
            port: {
                name
                for name, n in calls.items()
                if n != before[port].get(name, 0) and name not in BACKGROUND | {"info"}
            }
            for port, calls in self.calls().items()
        }


async def two_worlds_on(
    aiohttp_client: AiohttpClient, database_url: str, target: RedisTarget, **overrides: str
) -> tuple[World, World]:
    """Two instances with L1 on ``target``, their tracking up."""
    config = make_config(
        DATABASE_URL=database_url,
        DB_AUTO_MIGRATE="false",
        CACHE_L1_ENABLED="true",
        **target.env,
        **overrides,
    )
    worlds = []
    for _ in range(2):
        app = create_app(config)
        worlds.append(World(await aiohttp_client(app), app, config, Tokens(config.auth)))
    await tracking_on(*worlds)
    return worlds[0], worlds[1]


@dataclass
class OnTopology:
    nodes: list[Node]  # every data node
    a: World
    b: World


@pytest.fixture(params=TOPOLOGY_PARAMS)
async def on_topology(
    request: pytest.FixtureRequest, aiohttp_client: AiohttpClient, clean_database: str
) -> OnTopology:
    """Two instances with L1 on the session's Sentinel set, then its Cluster."""
    target = await target_named(request, request.param)
    a, b = await two_worlds_on(aiohttp_client, clean_database, target)
    return OnTopology(data_nodes(request, request.param), a, b)


async def test_a_warm_l1_read_sends_no_command_to_any_node(on_topology: OnTopology) -> None:
    a, nodes = on_topology.a, on_topology.nodes
    admin = await a.make_user(Role.ADMIN)
    guest = await a.make_user()
    path = f"/v1.0/user/{guest.id}"
    await warm(a, admin, path)
    counts = Counts(nodes)
    try:
        before = counts.calls()
        assert await l1_hits(a, admin, path, times=10) == 20  # the token check and the read
        assert counts.since(before) == {node.port: set() for node in nodes}
    finally:
        counts.close()


async def renamed_and_read(a: World, b: World, admin: Account, guest: Account, n: int) -> str:
    """B holds the guest in L1; A renames it; what B shows next."""
    await get(b, admin, f"/v1.0/user/{guest.id}")
    response = await a.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": f"Name {n}"}, headers=admin.headers
    )
    assert response.status == 200
    return str((await get(b, admin, f"/v1.0/user/{guest.id}"))["user"]["full_name"])


async def test_a_write_through_one_instance_is_seen_at_once_through_the_others_l1(
    on_topology: OnTopology,
) -> None:
    a, b = on_topology.a, on_topology.b
    admin = await a.make_user(Role.ADMIN)
    guest = await a.make_user()
    shown = [await renamed_and_read(a, b, admin, guest, n) for n in range(1, 51)]
    assert [s for n, s in enumerate(shown, 1) if s != f"Name {n}"] == []
    near = b.app[CACHE].near
    assert near is not None
    assert near.stats.hits >= 50  # B served from L1 (the admin's token check at least)
