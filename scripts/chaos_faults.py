"""The chaos run's faults, one coroutine per kind, and their schedule.

Every kind in ``Faults.kinds()`` runs ``--faults-each`` times, in a shuffled
order, spread over the run; the run lasts until the last one is over even
when that is past ``--minutes``. Whatever a fault takes away it gives back in
a ``finally``. Times when PostgreSQL was down, or out of one instance's
reach, go to the checker's ``Outages`` (with ``PG_GRACE_S`` for the pools).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from typing import Final

import aiohttp

from chaos_client import User
from chaos_history import History
from chaos_workload import Workload
from chaos_world import Instance, RedisNode, World
from chaos_writes import Plan

PG_GRACE_S: Final = 3.0  # after PostgreSQL is back (or reachable again), its pools reconnect
AFTER_S: Final = 3.0  # the phase "after <kind>" that follows each fault
MIN_NORMAL_S: Final = 2.0  # normal traffic between two faults, at least
BULK_USERS: Final = 150  # a plain SQL statement over more than 100 users
BURST_ADDS: Final = 20
BURST_READS: Final = 30
SATURATED_POOL: Final = {"DB_POOL_MAX_SIZE": "2", "DB_POOL_MIN_SIZE": "1"}
FAILOVER_USERS: Final = 12
KILL_ROUNDS: Final = 3  # CLIENT KILL / pg_terminate_backend, repeated this often, 1 s apart
COMMON: Final = (
    "redis_pause",
    "redis_kill",
    "redis_slow",
    "redis_clients_kill",
    "kill_writer",
    "pg_stop",
    "pg_terminate_all",
    "pg_path_loss",
    "path_delay",
    "listen_stop",
    "listen_terminate",
    "bulk_sql",
    "db_saturation",
)


class Skipped(Exception):
    """The fault could not be set up this time (the run goes on; not counted)."""


class Faults:
    def __init__(
        self, world: World, workload: Workload, history: History, session: aiohttp.ClientSession
    ) -> None:
        self.world = world
        self.redises = world.redises
        self.workload = workload
        self.history = history
        self.session = session
        self.rng: random.Random = workload.rng
        self.counts: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.log: list[str] = []
        self.t0 = time.monotonic()

    def kinds(self) -> list[str]:
        if self.redises.per_instance_path:
            return [*COMMON, "redis_blackhole"]
        return [*COMMON, "failover"]

    def note(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self.t0:7.1f} s  {text}")

    def victim(self) -> Instance:
        return self.rng.choice(self.world.instances)

    async def run(self, each: int, stop_at: float) -> None:
        plan = self.kinds() * each
        self.rng.shuffle(plan)
        gap = max(MIN_NORMAL_S, (stop_at - time.monotonic() - 20) / max(1, len(plan)))
        await asyncio.sleep(5)
        for kind in plan:
            started = time.monotonic()
            self.workload.phase = kind
            try:
                await getattr(self, kind)()
                self.counts[kind] += 1
            except Skipped as exc:
                self.note(f"{kind} skipped: {exc}")
            except Exception as exc:
                self.failed[kind] += 1
                self.note(f"{kind} FAILED: {exc!r}")
            self.workload.phase = f"after {kind}"
            await asyncio.sleep(AFTER_S)
            self.workload.phase = "normal"
            await asyncio.sleep(max(MIN_NORMAL_S, gap - (time.monotonic() - started)))

    # -- Redis, the servers ----------------------------------------------------------

    async def redis_pause(self) -> None:
        seconds = self.rng.uniform(4, 6)
        masters = self.redises.masters()
        self.note(f"Redis SIGSTOP for {seconds:.1f} s ({len(masters)} master(s))")
        try:
            for node in masters:
                node.process.pause()
            await asyncio.sleep(seconds)
        finally:
            for node in masters:
                node.process.resume()
        await asyncio.to_thread(self.redises.wait_healthy)

    async def _restart(self, node: RedisNode) -> None:
        await asyncio.to_thread(node.start)
        await asyncio.to_thread(self.redises.wait_healthy)

    async def redis_kill(self) -> None:
        node = self.rng.choice(self.redises.masters())
        self.note(f"Redis SIGKILL of {node.port}, restarted empty")
        node.process.kill()
        await asyncio.sleep(self.rng.uniform(0.5, 1.5))
        await self._restart(node)

    async def redis_slow(self) -> None:
        seconds = self.rng.uniform(6, 10)
        self.note(f"Redis DEBUG SLEEP bursts for {seconds:.1f} s")

        async def bursts(node: RedisNode) -> None:
            client = self.world.redis(node)
            try:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    with contextlib.suppress(Exception):
                        pause = f"{self.rng.uniform(0.3, 0.9):.2f}"
                        await client.execute_command("DEBUG", "SLEEP", pause)  # type: ignore[no-untyped-call]
                    await asyncio.sleep(self.rng.uniform(0.05, 0.3))
            finally:
                await client.aclose()

        await asyncio.gather(*(bursts(node) for node in self.redises.masters()))

    async def redis_clients_kill(self) -> None:
        killed = []
        for _ in range(KILL_ROUNDS):
            killed.append(await self.world.kill_redis_clients())
            await asyncio.sleep(1)
        self.note(f"Redis CLIENT KILL of every client connection, {KILL_ROUNDS} times: {killed}")

    async def failover(self) -> None:
        """A master's unreplicated tail lost: its replica stopped, writes
        acknowledged by the master alone, the master killed, the replica
        continued (and promoted)."""
        master = self.rng.choice(self.redises.masters())
        replica = self.redises.replica_of(master)
        if replica is None:
            raise Skipped("no replica")
        users = self.rng.sample(self.workload.users, FAILOVER_USERS)
        for user in users:  # cached (and replicated) before the writes
            for instance in self.world.live():
                await self.workload.read_user_of(self.session, user, instance)
        await asyncio.sleep(0.5)
        replica.process.pause()
        acked = 0
        try:
            for user in users:
                async with user.lock:
                    answer = await self.workload.write_locked(self.session, user)
                acked += 200 <= answer.status < 300
            master.process.kill()
        finally:
            replica.process.resume()
        self.note(
            f"failover: replica {replica.port} stopped, {acked} writes acknowledged,"
            f" master {master.port} killed, replica continued"
        )
        await asyncio.sleep(1)
        await self._restart(master)

    # -- Redis, one instance's path ------------------------------------------------------

    async def redis_blackhole(self) -> None:
        victim = self.victim()
        assert victim.redis_proxy is not None
        seconds = self.rng.uniform(4, 6)
        self.note(f"instance {victim.index}: its Redis path blackholed for {seconds:.1f} s")
        victim.redis_proxy.set_mode("blackhole")
        try:
            await asyncio.sleep(seconds)
        finally:
            victim.redis_proxy.set_mode("pass")

    async def path_delay(self) -> None:
        victim = self.victim()
        redis_s, pg_s = self.rng.uniform(0.1, 0.3), self.rng.uniform(0.02, 0.05)
        self.note(
            f"instance {victim.index}: its paths delayed for 6 s"
            f" (Redis {redis_s * 1000:.0f} ms, PostgreSQL {pg_s * 1000:.0f} ms each way)"
        )
        proxies = [(victim.pg_proxy, pg_s)]
        if victim.redis_proxy is not None:
            proxies.append((victim.redis_proxy, redis_s))
        try:
            for proxy, delay in proxies:
                proxy.set_mode("delay", delay)
            await asyncio.sleep(6)
        finally:
            for proxy, _ in proxies:
                proxy.set_mode("pass")

    # -- PostgreSQL ----------------------------------------------------------------------

    async def pg_stop(self) -> None:
        """PostgreSQL stopped for 4 s; on each instance, reads, a failed login, the same reads."""
        self.note("PostgreSQL stopped for 4 s, a login probe on each instance")
        started = time.monotonic()
        try:
            await asyncio.to_thread(self.world.postgres.stop)
            probes = [self.workload.login_probe(self.session, i) for i in self.world.live()]
            await asyncio.gather(asyncio.sleep(4), *probes)
        finally:
            await asyncio.to_thread(self.world.postgres.start)
            self.history.outages.add(started, time.monotonic() + PG_GRACE_S)

    async def pg_terminate_all(self) -> None:
        killed = []
        for _ in range(KILL_ROUNDS):
            killed.append(await self.world.terminate_sessions())
            await asyncio.sleep(1)
        self.note(f"pg_terminate_backend of every session, {KILL_ROUNDS} times: {killed}")

    async def pg_path_loss(self) -> None:
        """One instance's path to PostgreSQL blackholed, then its connections reset."""
        victim = self.victim()
        seconds = self.rng.uniform(3, 5)
        self.note(f"instance {victim.index}: its PostgreSQL path blackholed {seconds:.1f} s, reset")
        started = time.monotonic()
        victim.pg_proxy.set_mode("blackhole")
        try:
            await asyncio.sleep(seconds)
            victim.pg_proxy.set_mode("reset")
            await asyncio.sleep(0.2)
        finally:
            victim.pg_proxy.set_mode("pass")
            self.history.outages.add(started, time.monotonic() + PG_GRACE_S, victim.index)

    async def _listen_pid(self, victim: Instance) -> int:
        pid = await self.world.listen_backend(victim)
        if pid is None:
            raise Skipped(f"instance {victim.index}: no LISTEN session found")
        return pid

    async def listen_stop(self) -> None:
        victim = self.victim()
        pid = await self._listen_pid(victim)
        seconds = self.rng.uniform(4, 6)
        self.note(f"instance {victim.index}: its LISTEN backend {pid} SIGSTOP for {seconds:.1f} s")
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def listen_terminate(self) -> None:
        victim = self.victim()
        pid = await self._listen_pid(victim)
        self.note(f"instance {victim.index}: its LISTEN backend {pid} SIGSTOP 2 s, terminated")
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(2)
            await self.world.terminate(pid)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def bulk_sql(self) -> None:
        """One plain SQL statement renames more than 100 users while one
        instance's Redis path is cut (where it has one of its own)."""
        victim = self.victim()
        users = sorted(
            self.rng.sample(self.workload.users, min(BULK_USERS, len(self.workload.users))),
            key=lambda u: u.id,
        )
        cut = victim.redis_proxy
        self.note(
            f"plain SQL renames {len(users)} users"
            + (f"; instance {victim.index}'s Redis path blackholed for 3 s" if cut else "")
        )
        if cut is not None:
            cut.set_mode("blackhole")
        try:
            async with contextlib.AsyncExitStack() as locks:
                for user in users:
                    await locks.enter_async_context(user.lock)
                await self._rename_all(users)
            await asyncio.sleep(3)
        finally:
            if cut is not None:
                cut.set_mode("pass")

    async def _rename_all(self, users: list[User]) -> None:
        names = [user.next_name() for user in users]
        for user, name in zip(users, names, strict=True):
            self.history.fields[user.id]["full_name"].begin(name)
        try:
            conn = await self.world.connect()
            try:
                await conn.execute(
                    "UPDATE users SET full_name = v.name"
                    " FROM unnest($1::text[], $2::text[]) AS v(id, name) WHERE users.id = v.id",
                    [u.id for u in users],
                    names,
                )
            finally:
                await conn.close()
        except Exception:
            for user in users:
                await self.workload.read_back(user, "full_name", None)
            raise
        now = time.monotonic()
        for user in users:
            self.history.fields[user.id]["full_name"].ack(now)

    async def db_saturation(self) -> None:
        """An instance restarted with a pool of 2 (and, where it has one, its
        Redis path cut) takes a burst of PostgreSQL-bound requests."""
        victim = self.victim()
        cut = victim.redis_proxy
        self.note(
            f"instance {victim.index}: pool of 2{', Redis path cut' if cut else ''},"
            f" {BURST_ADDS} adds and {BURST_READS} PostgreSQL reads at once"
        )
        await asyncio.to_thread(victim.stop)
        victim.start(**SATURATED_POOL)
        await victim.wait()
        if cut is not None:
            cut.set_mode("blackhole")
        try:
            users = self.rng.sample(self.workload.users, BURST_ADDS)
            burst = [self._locked_add(user, victim) for user in users]
            burst += [self.workload.read_other_on(self.session, victim) for _ in range(BURST_READS)]
            await asyncio.gather(*burst)
        finally:
            if cut is not None:
                cut.set_mode("pass")
            await asyncio.to_thread(victim.stop)
            victim.start()
            await victim.wait()

    async def _locked_add(self, user: User, instance: Instance) -> None:
        plan = Plan("add", "POST", f"/v1.0/points/{user.id}/add", "points", amount=5)
        async with user.lock:
            await self.workload.write_locked(self.session, user, instance=instance, plan=plan)

    # -- an instance killed ------------------------------------------------------------

    async def kill_writer(self) -> None:
        """Redis paused; a write acknowledged by one instance; that instance -9 at once."""
        victim = self.victim()
        masters = self.redises.masters()
        self.note(f"Redis paused; instance {victim.index} killed -9 right after an acked write")
        for node in masters:
            node.process.pause()
        try:
            user = self.rng.choice(self.workload.users)
            plan = self.workload.rename_plan(user)
            async with user.lock:
                await self.workload.write_locked(self.session, user, instance=victim, plan=plan)
                victim.kill()
            await asyncio.sleep(self.rng.uniform(1.5, 3))
        finally:
            for node in masters:
                node.process.resume()
        victim.start()
        await victim.wait()
        await asyncio.to_thread(self.redises.wait_healthy)
