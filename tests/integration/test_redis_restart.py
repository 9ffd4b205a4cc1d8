"""A Redis node of ours that is killed and restarted starts empty, also after
it took part in a replication (``hita.embedded.redis.cache_only_args``).

The coherence argument (docs/cache.md) takes a restarted Redis to hold
nothing from before. ``save ""`` alone does not make it so: a full
synchronisation writes an RDB file on the master and on the replica, and a
node restarted in that directory loads it, starting as a master with entries
whose invalidations it never saw, until the cluster turns it into a replica
of the promoted one. ``make chaos`` on Cluster found stale reads right after
a killed master came back so (docs/chaos.md)."""

from __future__ import annotations

from pathlib import Path

from hita.embedded.process import wait_until
from tests.topologies import Node, client, free_ports

SYNC_TIMEOUT_S = 20.0


def test_a_killed_node_of_a_replicated_pair_restarts_empty(tmp_path: Path) -> None:
    master_port, replica_port = free_ports(2)
    master = Node(master_port, tmp_path / "master")
    replica = Node(
        replica_port, tmp_path / "replica", ("--replicaof", "127.0.0.1", str(master_port))
    )
    master.start()
    replica.start()
    try:
        with client(master_port) as on_master, client(replica_port) as on_replica:
            on_master.set("hita:user_details:1", "before the invalidation")
            wait_until(
                lambda: on_replica.get("hita:user_details:1") is not None,
                timeout_s=SYNC_TIMEOUT_S,
                what="the replica's full synchronisation",
            )
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.rdb")) == []
        for node in (replica, master):  # as the chaos run's failover does: SIGKILL
            node.kill()
        master.start()  # the same argv, in the same directory
        with client(master_port) as restarted:
            assert restarted.dbsize() == 0
    finally:
        for node in (replica, master):
            node.stop()
