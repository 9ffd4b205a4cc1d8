"""Local Redis topologies for tests: a 3-primary + 3-replica Redis Cluster and a
master + replica watched by 3 sentinels, all on 127.0.0.1, from the same
``redis-server`` binary (and ``redis-cli``) the embedded Redis uses. Every
server is a child process owned by PID; ``stop()`` ends them all.
"""

from __future__ import annotations

import random
import socket
import subprocess
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from redis import Redis as SyncRedis
from redis.crc import key_slot

from hita.embedded.process import ServerProcess, wait_until
from hita.embedded.redis import cache_only_args, redis_server_binary

HOST: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 30.0
CLUSTER_NODE_TIMEOUT_MS: Final = 1_000  # a dead primary is failed over in ~2-3 s
SENTINEL_DOWN_AFTER_MS: Final = 1_000
SENTINEL_FAILOVER_TIMEOUT_MS: Final = 5_000
MASTER_NAME: Final = "hitamaster"
PORT_RANGE: Final = (20_000, 29_000)  # the cluster bus listens on port + 10000


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, bus: bool = False) -> list[int]:
    """``count`` consecutive free ports (and their bus ports, +10000, if asked)."""
    for _ in range(200):
        base = random.randrange(*PORT_RANGE)
        ports = list(range(base, base + count))
        if all(_free(p) and (not bus or _free(p + 10_000)) for p in ports):
            return ports
    raise RuntimeError("no free ports on 127.0.0.1")


def client(port: int) -> SyncRedis:
    return SyncRedis(host=HOST, port=port, socket_timeout=5, socket_connect_timeout=5)


def _answers(port: int) -> bool:
    try:
        with client(port) as c:
            return bool(c.ping())
    except Exception:
        return False


@dataclass
class Node:
    """One redis-server (or sentinel) on a port, restartable with the same argv."""

    port: int
    root: Path
    extra: Sequence[str] = ()
    config_file: Path | None = None
    process: ServerProcess = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        head = [str(redis_server_binary())]
        if self.config_file is not None:
            head.append(str(self.config_file))
        argv = [
            *head,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            *cache_only_args(self.root),
            "--loglevel",
            "warning",
            *self.extra,
        ]
        self.process = ServerProcess(f"redis:{self.port}", argv, self.root / "server.log")

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> None:
        self.process.start()
        wait_until(self._ready, timeout_s=START_TIMEOUT_S, what=f"redis on {self.port}")

    def _ready(self) -> bool:
        reason = self.process.exited_early()
        if reason is not None:
            raise RuntimeError(f"redis on {self.port} exited: {reason}")
        return _answers(self.port)

    def kill(self) -> None:
        """SIGKILL by PID: no goodbye to the cluster or the sentinels."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()

    def running(self) -> bool:
        return self.process.running()


class RedisClusterServers:
    """Six nodes, ``redis-cli --cluster create`` with one replica per primary."""

    def __init__(self, root: Path, primaries: int = 3) -> None:
        ports = free_ports(2 * primaries, bus=True)
        self.root = root
        self.nodes = [
            Node(
                port,
                root / str(port),
                (
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(root / str(port) / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(CLUSTER_NODE_TIMEOUT_MS),
                    "--cluster-replica-validity-factor",
                    "0",
                ),
            )
            for port in ports
        ]

    @property
    def addresses(self) -> str:
        """REDIS_CLUSTER_NODES: every node (a client needs only one that answers)."""
        return ",".join(node.address for node in self.nodes)

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = redis_server_binary().with_name("redis-cli")
        subprocess.run(
            [
                str(cli),
                "--cluster",
                "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        self.wait_healthy()

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Every running node says cluster_state:ok and agrees on 3 primaries."""
        wait_until(self._healthy, timeout_s=timeout_s, what="Redis Cluster")

    def _healthy(self) -> bool:
        running = [n for n in self.nodes if n.running()]
        try:
            for node in running:
                with client(node.port) as c:
                    if c.execute_command("CLUSTER INFO")["cluster_state"] != "ok":
                        return False
                    if len(self.primary_ports(c)) != len(self.nodes) // 2:
                        return False
        except Exception:
            return False
        return True

    @staticmethod
    def cluster_nodes(c: SyncRedis) -> dict[str, dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = c.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
        return nodes

    @classmethod
    def primary_ports(cls, c: SyncRedis) -> list[int]:
        """Ports of the primaries that own slots and are not marked failed."""
        return sorted(
            int(address.rsplit(":", 1)[1])
            for address, state in cls.cluster_nodes(c).items()
            if "master" in state["flags"] and "fail" not in state["flags"] and state["slots"]
        )

    def primaries(self) -> list[Node]:
        alive = next(n for n in self.nodes if n.running())
        with client(alive.port) as c:
            return [self.node(p) for p in self.primary_ports(c)]

    def replica_of(self, primary: Node) -> Node:
        with client(primary.port) as c:
            nodes = self.cluster_nodes(c)
        primary_id = nodes[primary.address]["node_id"]
        return next(
            self.node(int(address.rsplit(":", 1)[1]))
            for address, state in nodes.items()
            if state["master_id"] == primary_id
        )

    def slot_owner(self, key: str) -> int:
        """The port of the primary serving ``key``'s slot now."""
        slot = key_slot(key.encode())
        alive = next(n for n in self.nodes if n.running())
        with client(alive.port) as c:
            for start, end, primary, *_ in c.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(primary[1])
        raise AssertionError(f"slot {slot} is not served")

    def held_down(self, replica: Node) -> bool:
        """Every running node flags ``replica`` as failed (``CLUSTER SLOTS`` no
        longer lists it)."""
        try:
            for node in self.nodes:
                if node is replica or not node.running():
                    continue
                with client(node.port) as c:
                    if "fail" not in self.cluster_nodes(c)[replica.address]["flags"].split(","):
                        return False
        except Exception:
            return False
        return True

    def promoted(self, replica: Node) -> bool:
        """``replica`` serves slots and the cluster says ok (False mid-failover)."""
        try:
            alive = next(n for n in self.nodes if n.running())
            with client(alive.port) as c:
                state = c.execute_command("CLUSTER INFO")["cluster_state"]
            return replica in self.primaries() and state == "ok"
        except Exception:
            return False

    def stop(self) -> None:
        for node in self.nodes:
            with suppress(Exception):
                node.stop()


SENTINEL_CONF: Final = """\
sentinel monitor {name} 127.0.0.1 {master} 2
sentinel down-after-milliseconds {name} {down_ms}
sentinel failover-timeout {name} {failover_ms}
sentinel parallel-syncs {name} 1
"""


class SentinelServers:
    """A master, one replica, and three sentinels (quorum 2) watching them."""

    def __init__(self, root: Path) -> None:
        master, replica, *sentinels = free_ports(5)
        self.root = root
        self.master_name = MASTER_NAME
        self.master = Node(master, root / str(master))
        self.replica = Node(replica, root / str(replica), ("--replicaof", HOST, str(master)))
        self.sentinels = []
        for port in sentinels:
            folder = root / str(port)
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(
                SENTINEL_CONF.format(
                    name=MASTER_NAME,
                    master=master,
                    down_ms=SENTINEL_DOWN_AFTER_MS,
                    failover_ms=SENTINEL_FAILOVER_TIMEOUT_MS,
                )
            )
            self.sentinels.append(Node(port, folder, ("--sentinel",), config_file=conf))

    @property
    def data_nodes(self) -> list[Node]:
        return [self.master, self.replica]

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(node.address for node in self.sentinels)

    def start(self) -> None:
        for node in (self.master, self.replica, *self.sentinels):
            node.start()
        self.wait_healthy()

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        wait_until(self._healthy, timeout_s=timeout_s, what="Redis Sentinel")

    def master_port(self) -> int | None:
        """Where the sentinels say the master is (None if they cannot say)."""
        for sentinel in self.sentinels:
            try:
                with client(sentinel.port) as c:
                    _, port = c.sentinel_get_master_addr_by_name(self.master_name)
                    return int(port)
            except Exception:
                continue
        return None

    def _healthy(self) -> bool:
        """The named master runs, has a connected replica, and every sentinel
        knows it and the other two sentinels."""
        try:
            for sentinel in self.sentinels:
                with client(sentinel.port) as c:
                    state = c.sentinel_master(self.master_name)
                    if (
                        "s_down" in str(state.get("flags", ""))
                        or int(state.get("num-other-sentinels", 0)) < len(self.sentinels) - 1
                    ):
                        return False
            port = self.master_port()
            if port is None:
                return False
            with client(port) as c:
                info = c.info("replication")
                return info["role"] == "master" and int(info["connected_slaves"]) >= 1
        except Exception:
            return False

    def node(self, port: int) -> Node:
        return next(n for n in self.data_nodes if n.port == port)

    def held_down(self, replica: Node) -> bool:
        """Every sentinel holds ``replica`` down (``s_down``)."""
        try:
            for sentinel in self.sentinels:
                with client(sentinel.port) as c:
                    listed = c.sentinel_slaves(self.master_name)
                if not any(r["port"] == replica.port and r["is_sdown"] for r in listed):
                    return False
        except Exception:
            return False
        return True

    def forget_replicas(self) -> None:
        """``SENTINEL RESET`` on every sentinel: they forget the replicas (and
        each other) and learn again those the master's INFO lists."""
        for sentinel in self.sentinels:
            with client(sentinel.port) as c:
                c.execute_command("SENTINEL", "RESET", self.master_name)

    def promoted(self, replica: Node) -> bool:
        """The sentinels name ``replica`` and it says it is the master."""
        if self.master_port() != replica.port:
            return False
        with client(replica.port) as c:
            return bool(c.info("replication")["role"] == "master")

    def stop(self) -> None:
        for node in (*self.sentinels, self.replica, self.master):
            with suppress(Exception):
                node.stop()
