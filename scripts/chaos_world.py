"""The chaos run's servers: a PostgreSQL on 127.0.0.1, Redis in one of three
topologies, and the HITA instances, each reaching PostgreSQL (and, with a
standalone Redis, Redis) through fault proxies of its own, so that one
instance can lose a path while the other keeps it.

A Sentinel set or a Cluster hands its clients the nodes' own addresses, so
on those topologies the instances reach Redis directly: the Redis faults hit
the nodes (and every instance) instead of one instance's path.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Final, Protocol

import asyncpg
from redis.asyncio import Redis

from hita.embedded import EmbeddedPostgres, EmbeddedRedis
from hita.embedded.process import ServerProcess, wait_until
from tests.topologies import MASTER_NAME, Node, RedisClusterServers, SentinelServers

from harness import procs
from harness.ports import free_port
from harness.proxy_host import ProxyHost, RemoteProxy
from harness.service import SERVE, service_env
from harness.waits import until_up

TOPOLOGIES: Final = ("standalone", "sentinel", "cluster")
DATABASE: Final = "hita_chaos"
HOST: Final = "127.0.0.1"
CONNECT_TIMEOUT_S: Final = 2.0
REDIS_TIMEOUT_S: Final = 5.0
HEALTHY_TIMEOUT_S: Final = 60.0
COHERENCE_APP: Final = "hita-coherence"  # application_name of an instance's LISTEN connection


class TcpPostgres(EmbeddedPostgres):
    """The embedded PostgreSQL, listening on a loopback port as well as its
    socket: each session's ``client_port`` then names the proxy connection,
    and so the instance, behind it."""

    def __init__(self, root: Path, database: str, port: int) -> None:
        self.port = port
        super().__init__(root, database, durable=False)

    def _argv(self) -> list[str]:
        argv = super()._argv()
        argv[argv.index("-p") + 1] = str(self.port)
        argv[argv.index("listen_addresses=")] = f"listen_addresses={HOST}"
        return argv

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"


class RedisNode(Protocol):
    @property
    def port(self) -> int | None: ...

    @property
    def process(self) -> ServerProcess: ...

    def start(self) -> None: ...


class Redises:
    """The Redis side of one topology: its data nodes and who is master now."""

    def __init__(self, topology: str, root: Path) -> None:
        self.topology = topology
        standalone = topology == "standalone"
        self.standalone = EmbeddedRedis(root / "redis", port=free_port()) if standalone else None
        self.sentinel = SentinelServers(root / "sentinel") if topology == "sentinel" else None
        self.cluster = RedisClusterServers(root / "cluster") if topology == "cluster" else None

    @property
    def per_instance_path(self) -> bool:
        """Whether each instance can reach Redis through a proxy of its own."""
        return self.standalone is not None

    def start(self) -> None:
        if self.sentinel is not None:
            self.sentinel.start()
        elif self.cluster is not None:
            self.cluster.start()
        elif self.standalone is not None:
            self.standalone.start()

    def stop(self) -> None:
        for node in self.data_nodes():
            node.process.resume()
        if self.sentinel is not None:
            self.sentinel.stop()
        elif self.cluster is not None:
            self.cluster.stop()
        elif self.standalone is not None:
            self.standalone.stop()

    def data_nodes(self) -> list[RedisNode]:
        if self.sentinel is not None:
            return list(self.sentinel.data_nodes)
        if self.cluster is not None:
            return list(self.cluster.nodes)
        return [self.standalone] if self.standalone is not None else []

    def masters(self) -> list[RedisNode]:
        if self.sentinel is not None:
            port = self.sentinel.master_port()
            return [self.sentinel.node(port)] if port is not None else []
        if self.cluster is not None:
            return list(self.cluster.primaries())
        return self.data_nodes()

    def replica_of(self, master: RedisNode) -> RedisNode | None:
        if self.sentinel is not None:
            return next(n for n in self.sentinel.data_nodes if n is not master)
        if self.cluster is not None:
            assert isinstance(master, Node)
            return self.cluster.replica_of(master)
        return None

    def wait_promoted(self, replica: RedisNode) -> None:
        """Until ``replica`` is a master (the sentinels name it, or it serves slots)."""

        def promoted() -> bool:
            try:
                return replica.port in [node.port for node in self.masters()]
            except Exception:  # a cluster in the middle of a failover
                return False

        wait_until(promoted, timeout_s=HEALTHY_TIMEOUT_S, what=f"Redis {replica.port} promoted")

    def wait_held_down(self, replica: RedisNode) -> None:
        """Until the failover manager holds ``replica`` down (Sentinel
        ``s_down``, Cluster ``fail``)."""
        if self.sentinel is not None:
            servers: SentinelServers | RedisClusterServers = self.sentinel
        else:
            assert self.cluster is not None, "only Sentinel and Cluster hold replicas down"
            servers = self.cluster
        assert isinstance(replica, Node)
        wait_until(
            lambda: servers.held_down(replica),
            timeout_s=HEALTHY_TIMEOUT_S,
            what=f"Redis {replica.port} held down",
        )

    def wait_healthy(self) -> None:
        if self.sentinel is not None:
            self.sentinel.wait_healthy(HEALTHY_TIMEOUT_S)
        elif self.cluster is not None:
            self.cluster.wait_healthy(HEALTHY_TIMEOUT_S)
        elif self.standalone is not None:
            wait_until(self.standalone.ping, timeout_s=HEALTHY_TIMEOUT_S, what="Redis")

    def settings(self, proxy_port: int | None) -> dict[str, str]:
        """The instance's Redis settings (standalone: through its proxy)."""
        if self.sentinel is not None:
            return {
                "REDIS_MODE": "sentinel",
                "REDIS_SENTINELS": self.sentinel.addresses,
                "REDIS_SENTINEL_MASTER": MASTER_NAME,
            }
        if self.cluster is not None:
            return {"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": self.cluster.addresses}
        return {"REDIS_URL": f"redis://{HOST}:{proxy_port}/0"}


class Instance:
    """One ``hita serve``, restartable with other settings."""

    def __init__(self, index: int, root: Path, env: dict[str, str]) -> None:
        self.index = index
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.root = root
        self.env = {**env, "PORT": str(self.port)}
        self.pg_proxy: RemoteProxy
        self.redis_proxy: RemoteProxy | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.up = False

    def start(self, **overrides: str) -> None:
        log = self.root / f"instance{self.index}.log"
        self.proc = procs.start(SERVE, {**self.env, **overrides}, log)

    async def wait(self) -> None:
        await until_up(f"{self.base}/v1.0/health/live", child=self.proc)
        self.up = True

    def kill(self) -> None:
        self.up = False
        if self.proc is not None:
            procs.stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        self.up = False
        if self.proc is not None:
            procs.stop(self.proc, signal.SIGINT, timeout_s=15)


class World:
    def __init__(self, root: Path, topology: str, secret: str, settings: dict[str, str]) -> None:
        self.root = root
        self.secret = secret
        self.settings = settings
        self.postgres = TcpPostgres(root / "pg", DATABASE, free_port())
        self.redises = Redises(topology, root)
        self.instances: list[Instance] = []
        self.proxies = ProxyHost()  # every instance's paths, relayed in a process of their own

    @property
    def database_url(self) -> str:
        return self.postgres.url

    async def start_servers(self) -> None:
        await asyncio.to_thread(self.postgres.start)
        await asyncio.to_thread(self.redises.start)
        await self.proxies.start()

    async def start_instances(self, count: int) -> None:
        for index in range(count):
            pg_proxy = await self.proxies.proxy(self.postgres.port, sniff=b"LISTEN ")
            redis_port = None
            redis_proxy = None
            if self.redises.standalone is not None:
                assert self.redises.standalone.port is not None
                redis_proxy = await self.proxies.proxy(self.redises.standalone.port)
                redis_port = redis_proxy.port
            env = service_env(
                database_url=f"postgresql://postgres@{HOST}:{pg_proxy.port}/{DATABASE}",
                redis_url=None,
                data_dir=self.root / f"data{index}",
                secret=self.secret,
                settings={**self.settings, **self.redises.settings(redis_port)},
            )
            instance = Instance(index, self.root, env)
            instance.pg_proxy, instance.redis_proxy = pg_proxy, redis_proxy
            self.instances.append(instance)
            instance.start()
        for instance in self.instances:
            await instance.wait()

    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.up] or self.instances

    async def close(self) -> None:
        for instance in self.instances:
            instance.stop()
            await instance.pg_proxy.close()
            if instance.redis_proxy is not None:
                await instance.redis_proxy.close()
        await self.proxies.close()
        await asyncio.to_thread(self.redises.stop)
        await asyncio.to_thread(self.postgres.stop)

    # -- PostgreSQL, directly -------------------------------------------------------

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url, timeout=CONNECT_TIMEOUT_S)

    async def terminate_sessions(self) -> int:
        """pg_terminate_backend of every client session of the service's database."""
        conn = await self.connect()
        try:
            killed: int = await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'",
                DATABASE,
            )
            return killed
        finally:
            await conn.close()

    async def listen_backend(self, instance: Instance) -> int | None:
        """The PID of the session that LISTENs for ``instance``: by its
        application_name, or one whose last statement was a LISTEN, or one the
        proxy saw send a LISTEN; only among that instance's sessions."""
        ports = await instance.pg_proxy.upstream_ports()
        sniffed = list(await instance.pg_proxy.sniffed() & ports)
        conn = await self.connect()
        try:
            pid: int | None = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])"
                " AND (application_name = $2 OR query ILIKE 'LISTEN%'"
                " OR client_port = ANY($3::int[]))"
                " ORDER BY (application_name = $2) DESC, backend_start DESC LIMIT 1",
                list(ports),
                COHERENCE_APP,
                sniffed,
            )
            return pid
        finally:
            await conn.close()

    async def terminate(self, pid: int) -> bool:
        conn = await self.connect()
        try:
            done: bool = await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            return done
        finally:
            await conn.close()

    # -- Redis, directly ----------------------------------------------------------------

    @staticmethod
    def redis(node: RedisNode) -> Redis:
        assert node.port is not None  # every node listens on a loopback port here
        return Redis(host=HOST, port=node.port, socket_timeout=REDIS_TIMEOUT_S)

    async def cut_replication(self, master: RedisNode) -> None:
        """Close the master's links to its replicas (CLIENT KILL TYPE replica)."""
        client = self.redis(master)
        try:
            await client.client_kill_filter(_type="replica")
        finally:
            await client.aclose()

    async def kill_redis_clients(self) -> int:
        """CLIENT KILL of every client connection on every data node (tracking
        and its invalidation subscriber included); the replication links, the
        sentinels' links and this connection are kept."""
        killed = 0
        for node in self.redises.data_nodes():
            client = self.redis(node)
            try:
                me = await client.client_id()
                for entry in await client.client_list():
                    flags, name = entry.get("flags", ""), entry.get("name", "")
                    if int(entry["id"]) == me or "S" in flags or "M" in flags:
                        continue
                    if name.startswith("sentinel"):
                        continue
                    killed += bool(await client.client_kill_filter(_id=entry["id"]))
            except Exception as exc:  # a node being failed over: the others still count
                print(f"CLIENT KILL on {node.port} failed: {exc!r}", flush=True)
            finally:
                await client.aclose()
        return killed
