"""Failover under traffic: a Redis Cluster primary, or the Sentinel master, is
killed (SIGKILL, by PID) while readers and a writer go through the app.

Each test owns its servers (a fresh cluster or sentinel set), so the kill
disturbs no other test. It shows: no 5xx on user routes; no read that began
after a write was acknowledged returns older data (a history check over every
read); and the cache serves hits again within ``RECOVERY_BUDGET_S`` of the
replica's promotion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import pytest
from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.appkeys import CACHE, CACHE_KEYS
from hita.domain.roles import Role
from hita.services.tokens import Tokens
from tests.conftest import (
    RedisTarget,
    cluster_target,
    make_config,
    sentinel_target,
)
from tests.integration.conftest import Account, World
from tests.topologies import (
    SENTINEL_DOWN_AFTER_MS,
    Node,
    RedisClusterServers,
    SentinelServers,
)

pytestmark = pytest.mark.slow

READERS: Final = 4
TRAFFIC_BUDGET_S: Final = 40.0  # the whole run, kill to recovery, at most
WARM_S: Final = 1.0  # traffic before the kill
RECOVERY_BUDGET_S: Final = 10.0  # promotion -> the cache serves hits again
USERS: Final = 12
BREAKER_OPEN_S: Final = "0.5"


@dataclass
class History:
    """Every acknowledged write and every read, with monotonic times."""

    acked: list[tuple[float, int]] = field(default_factory=list)  # (acked at, version)
    reads: list[tuple[float, int]] = field(default_factory=list)  # (started at, version seen)
    statuses: list[tuple[str, int]] = field(default_factory=list)  # (route, status)

    def stale_reads(self) -> list[tuple[float, int, int]]:
        """Reads that returned an older version than one acknowledged before
        the read began: (started at, seen, newest acknowledged)."""
        stale = []
        acked = sorted(self.acked)
        for started, seen in self.reads:
            newest = max((v for at, v in acked if at < started), default=0)
            if seen < newest:
                stale.append((started, seen, newest))
        return stale

    def server_errors(self) -> list[tuple[str, int]]:
        return [(route, status) for route, status in self.statuses if status >= 500]


@dataclass
class Scenario:
    world: World
    admin: Account
    guest: Account  # written all along
    probe: Account  # only read: its hits show the cache is back
    history: History = field(default_factory=History)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def write_forever(self) -> None:
        version = 0
        while not self.stop.is_set():
            version += 1
            response = await self.world.client.patch(
                f"/v1.0/user/update/{self.guest.id}",
                json={"full_name": f"Version {version}"},
                headers=self.admin.headers,
            )
            self.history.statuses.append(("update", response.status))
            if response.status == 200:
                self.history.acked.append((time.monotonic(), version))
            await response.release()

    async def read_forever(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            response = await self.world.client.get(
                f"/v1.0/user/{self.guest.id}", headers=self.admin.headers
            )
            self.history.statuses.append(("details", response.status))
            if response.status == 200:
                name = (await response.json())["user"]["full_name"]
                self.history.reads.append((started, int(name.rsplit(" ", 1)[1])))
            await response.release()
            listing = await self.world.client.get("/v1.0/user/list", headers=self.admin.headers)
            self.history.statuses.append(("list", listing.status))
            await listing.release()

    async def probe_hit(self) -> bool:
        """One read of the probe user: did the cache serve it?"""
        counters = self.world.app[CACHE].stats["user_details"]
        hits = counters.hits
        response = await self.world.client.get(
            f"/v1.0/user/{self.probe.id}", headers=self.probe.headers
        )
        self.history.statuses.append(("probe", response.status))
        await response.release()
        # The probe's request reads its own details twice (token check, then
        # the route): at least one hit means the cache answers for its key.
        return counters.hits > hits


async def open_scenario(
    aiohttp_client: AiohttpClient, database_url: str, target: RedisTarget, pick: Picker
) -> Scenario:
    config = make_config(
        DATABASE_URL=database_url,
        DB_AUTO_MIGRATE="false",
        CACHE_BREAKER_OPEN_S=BREAKER_OPEN_S,
        **target.env,
    )
    app = create_app(config)
    world = World(await aiohttp_client(app), app, config, Tokens(config.auth))
    admin = await world.make_user(Role.ADMIN)
    users = [await world.make_user(full_name="Version 0") for _ in range(USERS)]
    keys = world.app[CACHE_KEYS]
    guest, probe = pick([(u, keys.user_details(u.id).redis_key) for u in users])
    return Scenario(world, admin, guest, probe)


# Chooses the written user and the probe among (account, its details key).
Picker = Callable[[list[tuple[Account, str]]], tuple[Account, Account]]


async def run_failover(
    scenario: Scenario, kill: Callable[[], None], promoted: Callable[[], bool]
) -> dict[str, float]:
    """Traffic, the kill, the wait for promotion, the wait for a cache hit."""
    tasks = [asyncio.create_task(scenario.write_forever())]
    tasks += [asyncio.create_task(scenario.read_forever()) for _ in range(READERS)]
    deadline = time.monotonic() + TRAFFIC_BUDGET_S
    try:
        await asyncio.sleep(WARM_S)
        assert await scenario.probe_hit()  # the cache serves before the kill
        killed_at = time.monotonic()
        kill()
        while not await asyncio.to_thread(promoted):
            assert time.monotonic() < deadline, "no promotion within the budget"
            await asyncio.sleep(0.1)
        promoted_at = time.monotonic()
        while not await scenario.probe_hit():
            assert time.monotonic() < deadline, "the cache never served again"
            await asyncio.sleep(0.05)
        hit_at = time.monotonic()
        await asyncio.sleep(WARM_S)  # traffic goes on over the recovered cache
    finally:
        scenario.stop.set()
        await asyncio.gather(*tasks)
    return {
        "kill_to_promotion_s": promoted_at - killed_at,
        "promotion_to_hit_s": hit_at - promoted_at,
    }


def check(scenario: Scenario, timings: dict[str, float]) -> None:
    history = scenario.history
    print(  # the figures docs/ quotes; shown with pytest -s
        f"failover: {len(history.acked)} writes, {len(history.reads)} reads, "
        f"{len(history.statuses)} requests, "
        + ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
    )
    assert history.server_errors() == []
    assert history.stale_reads() == []
    assert len(history.acked) >= 10
    assert len(history.reads) >= 10
    assert timings["promotion_to_hit_s"] < RECOVERY_BUDGET_S


# -- Redis Cluster ------------------------------------------------------------


@pytest.mark.cluster
async def test_a_cluster_primary_killed_under_traffic(
    aiohttp_client: AiohttpClient, clean_database: str, own_cluster: RedisClusterServers
) -> None:
    owners: dict[str, int] = {}

    def pick(users: list[tuple[Account, str]]) -> tuple[Account, Account]:
        """The written user and the probe on the same primary, the one killed."""
        by_port: dict[int, list[Account]] = {}
        for account, key in users:
            by_port.setdefault(own_cluster.slot_owner(key), []).append(account)
        port, accounts = max(by_port.items(), key=lambda item: len(item[1]))
        assert len(accounts) >= 2
        owners["port"] = port
        return accounts[0], accounts[1]

    scenario = await open_scenario(
        aiohttp_client, clean_database, cluster_target(own_cluster), pick
    )
    victim = own_cluster.node(owners["port"])
    replica = own_cluster.replica_of(victim)

    timings = await run_failover(scenario, victim.kill, lambda: own_cluster.promoted(replica))
    check(scenario, timings)


# -- Sentinel -----------------------------------------------------------------


@pytest.mark.sentinel
async def test_the_sentinel_master_killed_under_traffic(
    aiohttp_client: AiohttpClient, clean_database: str, own_sentinel: SentinelServers
) -> None:
    scenario = await open_scenario(
        aiohttp_client,
        clean_database,
        sentinel_target(own_sentinel),
        lambda users: (users[0][0], users[1][0]),
    )
    victim: Node = own_sentinel.master
    replica = own_sentinel.replica

    timings = await run_failover(scenario, victim.kill, lambda: own_sentinel.promoted(replica))
    check(scenario, timings)
    assert timings["kill_to_promotion_s"] >= SENTINEL_DOWN_AFTER_MS / 1000
