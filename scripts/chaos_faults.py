"""The chaos run's faults, one coroutine per kind, and their schedule.

Every kind in ``Faults.kinds()`` runs ``--faults-each`` times, in a shuffled
order, spread over the run; the run lasts until the last one is over even
when that is past ``--minutes``. Here: the Redis faults, the path faults and
an instance killed; the PostgreSQL ones are in ``chaos_faults_db``. Whatever
a fault takes away it gives back in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Final

from chaos_client import User
from chaos_faults_db import KILL_ROUNDS, DatabaseFaults, Skipped
from chaos_history import Answer
from chaos_world import RedisNode

AFTER_S: Final = 3.0  # the phase "after <kind>" that follows each fault
MIN_NORMAL_S: Final = 2.0  # normal traffic between two faults, at least
FAILOVER_USERS: Final = 12
HELD_DOWN_DWELL_S: Final = 1.0  # between the writes and the master's death (failover_held)
RETRIES_OF_SKIPPED: Final = 3  # per kind, over the whole run
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


class Faults(DatabaseFaults):
    def kinds(self) -> list[str]:
        if self.redises.per_instance_path:
            return [*COMMON, "redis_blackhole"]
        return [*COMMON, "failover", "failover_held"]

    async def run(self, each: int, stop_at: float, only: list[str] | None = None) -> None:
        """Every kind (or those in ``only``) ``each`` times (a skipped one is
        tried again later, up to ``RETRIES_OF_SKIPPED`` times), spread evenly
        until ``stop_at``."""
        unknown = set(only or ()) - set(self.kinds())
        if unknown:
            raise ValueError(f"no such fault kind on this topology: {', '.join(sorted(unknown))}")
        plan = (only or self.kinds()) * each
        self.rng.shuffle(plan)
        gap = max(MIN_NORMAL_S, (stop_at - time.monotonic() - 20) / max(1, len(plan)))
        skipped: Counter[str] = Counter()
        await asyncio.sleep(5)
        for kind in plan:
            started = time.monotonic()
            self.workload.phase = kind
            try:
                await getattr(self, kind)()
                self.counts[kind] += 1
            except Skipped as exc:
                self.note(f"{kind} skipped: {exc}")
                skipped[kind] += 1
                if skipped[kind] <= RETRIES_OF_SKIPPED:
                    plan.append(kind)
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

    async def _restart(self, node: RedisNode, replica: RedisNode | None = None) -> None:
        """Start a killed node again, once ``replica`` (if any) has taken its
        place: back any earlier, an empty node would be the master again."""
        try:
            if replica is not None:
                await asyncio.to_thread(self.redises.wait_promoted, replica)
        finally:
            await asyncio.to_thread(node.start)
        await asyncio.to_thread(self.redises.wait_healthy)

    async def redis_kill(self) -> None:
        node = self.rng.choice(self.redises.masters())
        replica = self.redises.replica_of(node)
        self.note(
            f"Redis SIGKILL of {node.port}, restarted empty"
            + (f" once {replica.port} is promoted" if replica else "")
        )
        node.process.kill()
        await asyncio.sleep(self.rng.uniform(0.5, 1.5))
        await self._restart(node, replica)

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
        await self._lose_the_tail(held_down=False)

    async def failover_held(self) -> None:
        """``failover``, with the replica stopped until the failover manager
        holds it down (Cluster ``fail``, Sentinel ``s_down``) before the
        writes: it comes back with its memory and is promoted all the same."""
        await self._lose_the_tail(held_down=True)

    async def _lose_the_tail(self, *, held_down: bool) -> None:
        master = self.rng.choice(self.redises.masters())
        replica = self.redises.replica_of(master)
        if replica is None:
            raise Skipped("no replica")
        users = self.rng.sample(self.workload.users, FAILOVER_USERS)
        for user in users:  # cached (and replicated) before the writes
            for instance in self.world.live():
                await self.workload.read_user_of(self.session, user, instance)
        await asyncio.sleep(0.5)
        # The replica stopped and its link cut: what the master sends it from
        # now on is lost with the master (a stopped process's kernel would
        # still take in, and later hand over, what is sent on a live link).
        replica.process.pause()
        try:
            await self.world.cut_replication(master)
            if held_down:
                await asyncio.to_thread(self.redises.wait_held_down, replica)
            answers = await asyncio.gather(*(self._locked_rename(user) for user in users))
            if held_down:  # time for retries of what no replica confirmed to reach the master
                await asyncio.sleep(HELD_DOWN_DWELL_S)
            master.process.kill()
        finally:
            replica.process.resume()
        acked = sum(1 for a in answers if 200 <= a.status < 300)
        self.note(
            f"failover: replica {replica.port} stopped"
            + (" until held down" if held_down else "")
            + f", {acked} writes acknowledged, master {master.port} killed, replica continued;"
            " restarted once it is promoted"
        )
        await self._restart(master, replica)

    async def _locked_rename(self, user: User) -> Answer:
        async with user.lock:
            return await self.workload.write_locked(self.session, user)

    # -- Redis, one instance's path ------------------------------------------------------

    async def redis_blackhole(self) -> None:
        victim = self.victim()
        assert victim.redis_proxy is not None
        seconds = self.rng.uniform(4, 6)
        self.note(f"instance {victim.index}: its Redis path blackholed for {seconds:.1f} s")
        await victim.redis_proxy.set_mode("blackhole")
        try:
            await asyncio.sleep(seconds)
        finally:
            await victim.redis_proxy.set_mode("pass")

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
                await proxy.set_mode("delay", delay)
            await asyncio.sleep(6)
        finally:
            for proxy, _ in proxies:
                await proxy.set_mode("pass")

    # -- PostgreSQL ----------------------------------------------------------------------

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
