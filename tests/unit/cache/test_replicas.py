"""Which replicas an invalidation waits for (hita/cache/replication.py,
hita/cache/sentinel_watch.py): every one the failover manager could ever
promote, held down or not (docs/cache.md, invariant 14)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from hita.cache.connection import BoundedRedisCluster
from hita.cache.replication import ONE, ClusterReplicas, replicas_by_primary, replicas_of_myself
from hita.cache.sentinel_watch import promotable

# redis-server 6.2 (node ids shortened) while 127.0.0.1:7004, a replica, is flagged failed.
CLUSTER_NODES = """\
e7d1ee 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
67ed2d 127.0.0.1:7001@17001 master - 0 1426238316 2 connected 5461-10922
292f8b 127.0.0.1:7002@17002 master - 0 1426238318 3 connected 10923-16383
6ec239 127.0.0.1:7005@17005 slave 67ed2d 0 1426238316 5 connected
824fe1 127.0.0.1:7004@17004 slave,fail e7d1ee 1426238317 1426238317 4 disconnected
"""


def test_a_replica_flagged_failed_still_counts_for_its_master() -> None:
    assert replicas_by_primary(CLUSTER_NODES) == {
        "127.0.0.1:7000": 1,  # its replica is flagged fail: it may come back and be promoted
        "127.0.0.1:7001": 1,
        "127.0.0.1:7002": 0,
    }


def test_an_old_master_failed_over_is_nobodys_replica() -> None:
    """After a failover the dead old master is a failed master with no slots,
    not a replica of the promoted one: the promoted one acknowledges alone."""
    text = (
        "a1 127.0.0.1:7000@17000 master,fail - 1 1 1 disconnected\n"
        "b2 127.0.0.1:7003@17003,cache-3.internal myself,master - 0 0 7 connected 0-5460\n"
    )
    assert replicas_by_primary(text) == {
        "127.0.0.1:7000": 0,
        "127.0.0.1:7003": 0,
        "cache-3.internal:7003": 0,
    }


FLAGS = st.sets(st.sampled_from(["fail", "fail?", "handshake", "noaddr", "nofailover"]))


@st.composite
def clusters(draw: st.DrawFn) -> tuple[str, dict[str, int]]:
    """A CLUSTER NODES reply, lines in any order, and each master's replica count."""
    masters = draw(st.integers(min_value=1, max_value=5))
    lines, expected = [], {}
    for m in range(masters):
        address = f"10.0.0.{m}:{6379 + m}"
        count = draw(st.integers(min_value=0, max_value=3))
        expected[address] = count
        flags = ",".join(["master", *sorted(draw(FLAGS) - {"nofailover"})])
        lines.append(f"m{m} {address}@1{6379 + m} {flags} - 0 0 {m} connected {m}")
        for r in range(count):
            flags = ",".join(["slave", *sorted(draw(FLAGS))])
            lines.append(f"r{m}x{r} 10.1.{m}.{r}:7000@17000 {flags} m{m} 0 0 {m} disconnected")
    return "\n".join(draw(st.permutations(lines))), expected


@given(clusters())
def test_every_replica_is_counted_whatever_its_flags_or_its_line(
    cluster: tuple[str, dict[str, int]],
) -> None:
    text, expected = cluster
    assert replicas_by_primary(text) == expected


def sentinel_replica(**state: Any) -> dict[str, Any]:
    return {"is_sdown": False, "is_odown": False, "is_disconnected": False, **state}


def test_the_sentinels_replicas_count_held_down_or_not_but_never_priority_zero() -> None:
    replicas = [
        sentinel_replica(**{"slave-priority": 100}),
        sentinel_replica(is_sdown=True, is_disconnected=True, **{"slave-priority": 100}),
        sentinel_replica(**{"slave-priority": 0}),  # never promoted by the sentinels
    ]
    assert promotable(replicas) == 2
    assert promotable([]) == 0


def cluster_replicas(slots: dict[int, list[str]]) -> ClusterReplicas:
    holders = {slot: [SimpleNamespace(name=n) for n in names] for slot, names in slots.items()}
    redis = SimpleNamespace(nodes_manager=SimpleNamespace(slots_cache=holders), reloads=0)
    return ClusterReplicas(cast(BoundedRedisCluster, redis))


def test_a_primary_is_taken_to_have_a_replica_until_cluster_nodes_says_otherwise() -> None:
    replicas = cluster_replicas({1: ["127.0.0.1:7000"], 2: ["127.0.0.1:7002"]})
    assert replicas.wanted(1) == ONE  # nothing read yet: the safe side
    replicas._known = replicas_by_primary(CLUSTER_NODES)
    assert replicas.wanted(1) == ONE  # its one replica is flagged failed: still waited for
    assert replicas.wanted(2) == 0  # none at all
    assert replicas.wanted(None) == 0  # not a cluster key


def test_a_replica_the_slot_map_lists_is_waited_for_whatever_cluster_nodes_said() -> None:
    replicas = cluster_replicas({1: ["127.0.0.1:7002", "127.0.0.1:7009"], 3: ["10.9.9.9:1"]})
    replicas._known = replicas_by_primary(CLUSTER_NODES)
    assert replicas.wanted(1) == ONE
    assert replicas.wanted(3) == ONE  # a primary CLUSTER NODES did not list: the safe side


def test_a_master_counts_its_own_replicas_failed_ones_too() -> None:
    assert replicas_of_myself(CLUSTER_NODES) == 1  # 7000's replica 7004 is flagged fail
    mine = CLUSTER_NODES.replace("myself,master", "master").replace(
        "67ed2d 127.0.0.1:7001@17001 master", "67ed2d 127.0.0.1:7001@17001 myself,master"
    )
    assert replicas_of_myself(mine) == 1
    alone = CLUSTER_NODES.replace("myself,master", "master").replace(
        "292f8b 127.0.0.1:7002@17002 master", "292f8b 127.0.0.1:7002@17002 myself,master"
    )
    assert replicas_of_myself(alone) == 0


def test_a_reply_that_names_no_self_is_taken_to_have_a_replica() -> None:
    assert replicas_of_myself(CLUSTER_NODES.replace("myself,", "")) == ONE
    assert replicas_of_myself("") == ONE


def test_the_dict_redis_py_may_parse_the_reply_into_reads_the_same() -> None:
    parsed = {
        "127.0.0.1:7000": {"node_id": "a", "flags": "myself,master", "master_id": "-"},
        "127.0.0.1:7001": {"node_id": "b", "flags": "slave,fail", "master_id": "a"},
        "127.0.0.1:7002": {"node_id": "c", "flags": "master", "master_id": "-"},
    }
    assert replicas_of_myself(parsed) == 1
    assert replicas_by_primary(parsed) == {"127.0.0.1:7000": 1, "127.0.0.1:7002": 0}


def test_a_master_that_announces_a_hostname_is_known_by_it_too() -> None:
    """Redis 7 appends ``,hostname`` to the bus port; the slot map may name
    nodes by it (``cluster-preferred-endpoint-type hostname``)."""
    text = (
        "a 10.0.0.1:6379@16379,cache-1.internal myself,master - 0 0 1 connected 0-16383\n"
        "b 10.0.0.2:6379@16379,cache-2.internal slave,fail a 0 0 1 disconnected\n"
    )
    assert replicas_by_primary(text) == {"10.0.0.1:6379": 1, "cache-1.internal:6379": 1}
    assert replicas_of_myself(text) == 1
