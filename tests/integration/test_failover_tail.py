"""An invalidation acknowledged just before a failover is not lost with the
master's unreplicated tail (docs/cache.md, invariant 14).

The tail is lost on purpose, as in `make chaos`: the replica is stopped
(SIGSTOP) and its replication link cut (CLIENT KILL TYPE replica on the
master; a stopped process's kernel would otherwise take in the stream and
hand it over later), renames are answered 200, the master is killed, the
replica continued and promoted. Two instances (L1 on) then read the renamed
users until their caches serve them again: no read may show an old name.
The control turns the replica's confirmation off (CACHE_REPLICA_WAIT_MS=0):
the promoted replica still holds the old entries, and the reads show them.

The replica may also be held down by the failover manager (flagged ``fail``
by the Cluster, ``s_down`` by the sentinels) before the renames: it comes
back with its memory when continued and is promoted all the same, so it is
still waited for. Its control waits only for replicas not held down, as the
service did: the renames are acknowledged by the master alone and lost.
On Sentinel the old master is restarted once the replica is promoted, as its
supervisor would: the sentinels list it as the new master's replica, held
down, until it comes back and they make it one.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import pytest
from pytest_aiohttp import AiohttpClient

from hita.appkeys import CACHE, CACHE_KEYS, COHERENCE
from hita.cache import replication, sentinel_watch
from hita.cache.connection import BoundedRedisCluster, BoundedSentinelPool
from hita.cache.replication import ClusterReplicas
from hita.cache.sentinel_watch import SentinelWatch
from hita.domain.roles import Role
from tests.conftest import cluster_target, sentinel_target
from tests.integration.conftest import Account, World, until
from tests.integration.test_coherence import settled
from tests.integration.test_near_cache_topologies import two_worlds_on
from tests.topologies import HOST, Node, RedisClusterServers, SentinelServers, client, free_ports

pytestmark = pytest.mark.slow

GUESTS: Final = 4
# Before the kill, the writes' rows may be acknowledged. The controls' rows are,
# in 0.25 s on an idle host: a window of 0.3 s let a loaded CI host kill the
# master first, the rows were replayed, and a control saw no old name.
ACKED_WITHIN_S: Final = 2.0
PROMOTION_BUDGET_S: Final = 30.0
RECOVERY_BUDGET_S: Final = 30.0  # promotion -> every read served from the cache again
HOLD_DOWN_BUDGET_S: Final = 20.0  # the failover manager flags a stopped replica
OLD: Final = "Before The Failover"
NEW: Final = "After The Failover"
BREAKER: Final = {"CACHE_BREAKER_OPEN_S": "0.5"}  # the cache comes back soon after promotion


@dataclass
class Tail:
    a: World  # writes
    b: World  # only reads
    admin: Account
    guests: list[Account]
    master: Node
    replica: Node
    promoted: Callable[[], bool]
    held_down: Callable[[], bool]  # the failover manager holds the replica down
    restart_old_master: bool  # once the replica is promoted, as a supervisor would


async def name_of(world: World, admin: Account, guest: Account) -> tuple[str, bool]:
    """The name ``world`` shows, and whether its cache answered (L1 or Redis)."""
    counters = world.app[CACHE].stats["user_details"]
    hits = counters.hits
    response = await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)
    assert response.status == 200
    name = str((await response.json())["user"]["full_name"])
    return name, counters.hits > hits


async def lose_the_tail(
    tail: Tail,
    *,
    hold_down: bool = False,
    then: Callable[[Tail], Awaitable[None]] | None = None,
) -> list[tuple[str, str]]:
    """The failover (the replica first held down by the failover manager if
    ``hold_down``, and ``then`` awaited); then every (instance, name) read that
    showed an old name."""
    a, b, admin = tail.a, tail.b, tail.admin
    for world in (a, b):  # cached in Redis (and L1) on both, then replicated
        for guest in tail.guests:
            for _ in range(2):
                assert (await name_of(world, admin, guest))[0] == OLD
    await settled(a, b)
    with client(tail.master.port) as master:
        assert master.execute_command("WAIT", 1, 5_000) == 1
    tail.replica.process.pause()
    try:
        with client(tail.master.port) as master:
            assert master.client_kill_filter(_type="replica") >= 1
        if hold_down:
            await until_in_thread(tail.held_down, "the replica was never held down")
        if then is not None:
            await then(tail)
        answers = await asyncio.gather(
            *(
                a.client.patch(
                    f"/v1.0/user/update/{g.id}", json={"full_name": NEW}, headers=admin.headers
                )
                for g in tail.guests
            )
        )
        assert [r.status for r in answers] == [200] * len(tail.guests)
        await acknowledged_or(a, b, ACKED_WITHIN_S)
        tail.master.kill()
    finally:
        tail.replica.process.resume()
    await until_in_thread(tail.promoted, "the replica was never promoted", PROMOTION_BUDGET_S)
    if tail.restart_old_master:
        await asyncio.to_thread(tail.master.start)
    return await read_until_served(tail)


async def until_in_thread(
    check: Callable[[], bool], what: str, timeout_s: float = HOLD_DOWN_BUDGET_S
) -> None:
    """``until`` for a check that talks to the servers (run off the loop)."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def acknowledged_or(writer: World, reader: World, seconds: float) -> None:
    """Until every outbox row is acknowledged and the reader has applied all it
    heard of them, or ``seconds``: whatever the mechanism lets through is then
    in the master's tail, not in flight. The reader takes in a row it heard of
    before the writer's acknowledgement reached the table; its application,
    left in flight at the kill, is retried on the promoted replica and removes
    the old entries there (a loaded CI host so saw no old name in a control)."""
    deadline = time.monotonic() + seconds
    outbox = writer.app[COHERENCE].outbox
    while (await outbox.waiting())[0]:
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.01)
    coherence = reader.app[COHERENCE]
    renewed = coherence.stats.renewals
    coherence.session._on_hint(True)  # renew now: past every row acknowledged above
    while coherence.stats.renewals < renewed + 2 or reader.app[CACHE].pending:
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.01)


async def read_until_served(tail: Tail) -> list[tuple[str, str]]:
    """Read every guest on both instances until each read is served by the
    cache again (so it is the cache's answer that is judged); the stale ones."""
    stale = []
    deadline = time.monotonic() + RECOVERY_BUDGET_S
    waiting = {(w, g.id) for w in ("a", "b") for g in tail.guests}
    while waiting:
        assert time.monotonic() < deadline, f"the cache never served again: {sorted(waiting)}"
        for label, world in (("a", tail.a), ("b", tail.b)):
            for guest in tail.guests:
                name, served = await name_of(world, tail.admin, guest)
                if name != NEW:
                    stale.append((label, name))
                if served:
                    waiting.discard((label, guest.id))
        await asyncio.sleep(0.05)
    return stale


# -- Sentinel -----------------------------------------------------------------


async def sentinel_tail(
    aiohttp_client: AiohttpClient, database_url: str, servers: SentinelServers, **overrides: str
) -> Tail:
    a, b = await two_worlds_on(aiohttp_client, database_url, sentinel_target(servers), **overrides)
    admin = await a.make_user(Role.ADMIN)
    guests = [await a.make_user(full_name=OLD) for _ in range(GUESTS)]
    replica = servers.replica
    return Tail(
        a,
        b,
        admin,
        guests,
        servers.master,
        replica,
        functools.partial(servers.promoted, replica),
        functools.partial(servers.held_down, replica),
        restart_old_master=True,
    )


# -- Redis Cluster ------------------------------------------------------------


async def cluster_tail(
    aiohttp_client: AiohttpClient,
    database_url: str,
    servers: RedisClusterServers,
    **overrides: str,
) -> Tail:
    a, b = await two_worlds_on(
        aiohttp_client, database_url, cluster_target(servers), **BREAKER, **overrides
    )
    admin = await a.make_user(Role.ADMIN)
    keys = a.app[CACHE_KEYS]
    by_port: dict[int, list[Account]] = {}
    while not by_port or max(len(v) for v in by_port.values()) < GUESTS:
        guest = await a.make_user(full_name=OLD)
        port = servers.slot_owner(keys.user_details(guest.id).redis_key)
        by_port.setdefault(port, []).append(guest)
    port, guests = max(by_port.items(), key=lambda item: len(item[1]))
    master = servers.node(port)
    replica = servers.replica_of(master)
    promoted = functools.partial(servers.promoted, replica)
    held_down = functools.partial(servers.held_down, replica)
    return Tail(
        a, b, admin, guests[:GUESTS], master, replica, promoted, held_down, restart_old_master=False
    )


MakeTail = Callable[..., Awaitable[Tail]]


@pytest.fixture(
    params=[
        pytest.param("sentinel", marks=pytest.mark.sentinel),
        pytest.param("cluster", marks=pytest.mark.cluster),
    ]
)
def make_tail(
    request: pytest.FixtureRequest, aiohttp_client: AiohttpClient, clean_database: str
) -> MakeTail:
    """Two instances on a Sentinel set, then on a Cluster, of the test's own."""

    async def make(**overrides: str) -> Tail:
        if request.param == "sentinel":
            servers = request.getfixturevalue("own_sentinel")
            return await sentinel_tail(aiohttp_client, clean_database, servers, **overrides)
        servers = request.getfixturevalue("own_cluster")
        return await cluster_tail(aiohttp_client, clean_database, servers, **overrides)

    return make


async def test_an_acknowledged_invalidation_survives_a_failover(make_tail: MakeTail) -> None:
    tail = await make_tail()
    assert await lose_the_tail(tail) == []
    assert tail.a.app[CACHE].stats.replica_timeouts >= 1  # the replica was waited for


async def test_control_without_the_replicas_word_a_failover_shows_old_names(
    make_tail: MakeTail,
) -> None:
    tail = await make_tail(CACHE_REPLICA_WAIT_MS="0")
    assert OLD in {name for _, name in await lose_the_tail(tail)}


async def test_a_replica_held_down_when_the_renames_were_made_is_still_waited_for(
    make_tail: MakeTail,
) -> None:
    tail = await make_tail()
    assert await lose_the_tail(tail, hold_down=True) == []
    assert tail.a.app[CACHE].stats.replica_timeouts >= 1


async def test_control_waiting_only_for_replicas_not_held_down_shows_old_names(
    make_tail: MakeTail, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slot_map_only(self: ClusterReplicas, slot: int | None) -> int:
        holders = self._redis.nodes_manager.slots_cache.get(slot) if slot is not None else None
        return 1 if holders and len(holders) > 1 else 0

    def up_only(replicas: list[dict[str, Any]]) -> int:
        return sum(1 for r in replicas if not (r["is_sdown"] or r["is_odown"]))

    monkeypatch.setattr(ClusterReplicas, "wanted", slot_map_only)
    monkeypatch.setattr(replication, "replicas_of_myself", lambda reply: 0)  # the primary's word
    monkeypatch.setattr(sentinel_watch, "promotable", up_only)
    tail = await make_tail()
    found = await lose_the_tail(tail, hold_down=True, then=instances_see_the_hold_down)
    assert OLD in {name for _, name in found}


async def instances_see_the_hold_down(tail: Tail) -> None:
    """The control's instances learn of the hold-down before the renames, as
    they would at their next slot map reload or sentinel poll: otherwise the
    control's outcome hangs on when that comes. Until it does they still wait
    for the replica, time out, and the renames are replayed after the
    failover: a loaded CI host so saw no old name (once on each topology)."""
    for world in (tail.a, tail.b):
        cache = world.app[CACHE]
        if isinstance(cache.replicas, SentinelWatch):
            await cache.replicas.refresh()
            assert cache.replicas.replicas == 0
        else:
            redis = cache.redis
            assert isinstance(redis, BoundedRedisCluster)
            redis.mark_stale()
            await redis._reload_if_stale()  # the reload it makes before a command


# -- Sentinel: a restarted old master that a lagging sentinel still names ------


async def read_after_a_write_through_an_impostor(
    aiohttp_client: AiohttpClient,
    database_url: str,
    servers: SentinelServers,
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """The unplanned failover's race (`make chaos` on Sentinel, `redis_kill`):
    the sentinels name a master with no replica they could promote (here its
    replica stopped, cut off and forgotten, ``SENTINEL RESET``), while A's pool reaches,
    through a lagging sentinel, an old master restarted empty (an ``impostor``
    of this test's own). A renames a guest; B, which reads the named master,
    reads the guest at once and for a while after: the names it shows."""
    a, b = await two_worlds_on(
        aiohttp_client, database_url, sentinel_target(servers), CACHE_READER_RENEW_MS="1000"
    )
    admin = await a.make_user(Role.ADMIN)
    guest = await a.make_user(full_name=OLD)
    for world in (a, b):  # in the named master and in both L1s
        for _ in range(2):
            assert (await name_of(world, admin, guest))[0] == OLD
    await settled(a, b)
    hint = b.app[COHERENCE].session._on_hint  # B hears of the row at its renewal (or when hurried)
    monkeypatch.setattr(b.app[COHERENCE].session, "_on_hint", lambda hurry: hurry and hint(hurry))
    impostor = Node(free_ports(1)[0], servers.root / "impostor")
    impostor.start()
    servers.replica.process.pause()
    try:
        with client(servers.master.port) as master:  # the master lists it no more
            assert master.client_kill_filter(_type="replica") >= 1
        await asyncio.to_thread(servers.forget_replicas)  # nor do the sentinels
        watches = [w.app[CACHE].replicas for w in (a, b)]
        await until(
            lambda: all(getattr(w, "replicas", None) == 0 for w in watches),
            "the sentinels never forgot the replica",
            timeout_s=20,
        )
        pool = a.app[CACHE].redis.connection_pool  # type: ignore[union-attr]
        assert isinstance(pool, BoundedSentinelPool)
        lagging = (HOST, impostor.port)

        async def discover_master(service_name: str) -> tuple[str, int]:
            return lagging

        monkeypatch.setattr(pool.sentinel_manager, "discover_master", discover_master)
        assert tuple(await pool.get_master_address()) == lagging  # A's pool moves there
        response = await a.client.patch(
            f"/v1.0/user/update/{guest.id}", json={"full_name": NEW}, headers=admin.headers
        )
        assert response.status == 200
        shown = []
        for _ in range(10):
            shown.append((await name_of(b, admin, guest))[0])
            await asyncio.sleep(0.02)
        return shown
    finally:
        servers.replica.process.resume()
        impostor.stop()


@pytest.mark.sentinel
async def test_a_master_the_sentinels_do_not_name_acknowledges_no_invalidation_alone(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    own_sentinel: SentinelServers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown = await read_after_a_write_through_an_impostor(
        aiohttp_client, clean_database, own_sentinel, monkeypatch
    )
    assert set(shown) == {NEW}


@pytest.mark.sentinel
async def test_control_any_master_with_no_replica_acknowledging_alone_shows_the_old_name(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    own_sentinel: SentinelServers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SentinelWatch, "sole_master", lambda self: None)
    shown = await read_after_a_write_through_an_impostor(
        aiohttp_client, clean_database, own_sentinel, monkeypatch
    )
    assert OLD in shown


# -- Sentinel: a replica one sentinel forgot --------------------------------


async def replicas_after_one_sentinel_forgets(
    aiohttp_client: AiohttpClient, database_url: str, servers: SentinelServers
) -> int:
    """The replica stopped and cut off, and forgotten (``SENTINEL RESET``) by
    the sentinel the watch asks first only: the replicas the watch then counts.
    The other two still list it, and the one that leads a failover promotes
    from its own list."""
    a, _ = await two_worlds_on(aiohttp_client, database_url, sentinel_target(servers))
    watch = a.app[CACHE].replicas
    assert isinstance(watch, SentinelWatch)
    await until(lambda: watch.replicas == 1, "the watch never saw the replica")
    pool = a.app[CACHE].redis.connection_pool  # type: ignore[union-attr]
    assert isinstance(pool, BoundedSentinelPool)
    asked = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["port"]
    servers.replica.process.pause()
    try:
        with client(servers.master.port) as master:
            assert master.client_kill_filter(_type="replica") >= 1
        with client(asked) as sentinel:
            sentinel.execute_command("SENTINEL", "RESET", servers.master_name)

        def forgotten() -> bool:
            with client(asked) as sentinel:
                return not sentinel.sentinel_slaves(servers.master_name)

        await until_in_thread(forgotten, "the sentinel never forgot the replica")
        await asyncio.sleep(3 * sentinel_watch.REFRESH_S)  # the watch asked again
        return watch.replicas
    finally:
        servers.replica.process.resume()


@pytest.mark.sentinel
async def test_a_replica_one_sentinel_forgot_is_still_waited_for(
    aiohttp_client: AiohttpClient, clean_database: str, own_sentinel: SentinelServers
) -> None:
    assert await replicas_after_one_sentinel_forgets(aiohttp_client, clean_database, own_sentinel)


@pytest.mark.sentinel
async def test_control_asking_one_sentinel_counts_no_replica(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    own_sentinel: SentinelServers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def first_only(self: SentinelWatch) -> int:
        first = self._pool.sentinel_manager.sentinels[0]
        return sentinel_watch.promotable(await first.sentinel_slaves(self.master_name))

    monkeypatch.setattr(SentinelWatch, "_most_replicas", first_only)
    replicas = await replicas_after_one_sentinel_forgets(
        aiohttp_client, clean_database, own_sentinel
    )
    assert replicas == 0


# -- Redis Cluster: a replica that joined after the view was read -------------


async def tail_after_a_first_failover(
    aiohttp_client: AiohttpClient, database_url: str, servers: RedisClusterServers
) -> Tail:
    """`make chaos`'s finding: the shard failed over once (its master killed,
    the replica promoted), both instances read the cluster's view while the
    old master was down (the promoted one has no replica), then the old master
    came back as the promoted one's replica. The view says nothing of it: the
    tail to lose is the promoted master's, the replica the old master."""
    first = await cluster_tail(aiohttp_client, database_url, servers)
    first.master.kill()
    await until_in_thread(first.promoted, "the replica was never promoted", PROMOTION_BUDGET_S)
    for world in (first.a, first.b):  # each reads the view while the old master is down
        for name in ("Between The Failovers", OLD):
            await rename(world, first.admin, first.guests[0], name)
    caches = [w.app[CACHE] for w in (first.a, first.b)]
    await until(lambda: not any(c.pending for c in caches), "the renames were never applied")
    for cache in caches:
        view = cache.replicas
        assert isinstance(view, ClusterReplicas)
        assert view._known is not None
        assert view._known[first.replica.address] == 0  # the promoted one: no replica
    await asyncio.to_thread(first.master.start)  # rejoins as the promoted one's replica

    def replicated() -> bool:
        with client(first.replica.port) as promoted:
            return bool(promoted.execute_command("WAIT", 1, 1_000) == 1)

    await until_in_thread(replicated, "the old master never became a replica")

    def named_by_the_primary() -> bool:
        """The promoted primary's own table lists the old master as its replica
        (it may replicate before the primary has heard its new role: then the
        primary's word names no replica, the window docs/cache.md leaves open)."""
        with client(first.replica.port) as promoted:
            nodes = servers.cluster_nodes(promoted)
        me = nodes[first.replica.address]["node_id"]
        return bool(nodes[first.master.address]["master_id"] == me)

    await until_in_thread(named_by_the_primary, "the primary never named its new replica")
    return Tail(
        first.a,
        first.b,
        first.admin,
        first.guests,
        first.replica,
        first.master,
        functools.partial(servers.promoted, first.master),
        functools.partial(servers.held_down, first.master),
        restart_old_master=False,
    )


async def rename(world: World, admin: Account, user: Account, name: str) -> None:
    """Rename ``user`` through ``world``, trying again until it is answered 200."""
    deadline = time.monotonic() + PROMOTION_BUDGET_S
    while True:
        response = await world.client.patch(
            f"/v1.0/user/update/{user.id}", json={"full_name": name}, headers=admin.headers
        )
        if response.status == 200:
            return
        assert time.monotonic() < deadline, f"the rename was answered {response.status}"
        await asyncio.sleep(0.1)


@pytest.mark.cluster
async def test_a_replica_that_joined_after_the_view_was_read_is_waited_for(
    aiohttp_client: AiohttpClient, clean_database: str, own_cluster: RedisClusterServers
) -> None:
    tail = await tail_after_a_first_failover(aiohttp_client, clean_database, own_cluster)
    assert await lose_the_tail(tail) == []


@pytest.mark.cluster
async def test_control_a_primary_that_acknowledges_on_the_views_word_shows_old_names(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    own_cluster: RedisClusterServers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replication, "replicas_of_myself", lambda reply: 0)
    tail = await tail_after_a_first_failover(aiohttp_client, clean_database, own_cluster)
    assert OLD in {name for _, name in await lose_the_tail(tail)}
