"""The chaos run's PostgreSQL faults (``chaos_faults`` schedules them with the
Redis ones): PostgreSQL stopped, every session terminated, one instance's
path cut or its LISTEN backend stopped, a plain SQL statement over more than
100 users, a saturated DB gate. Times when PostgreSQL was down, or out of one
instance's reach, go to the checker's ``Outages`` (with ``PG_GRACE_S`` for
the pools to reconnect). Whatever a fault takes away it gives back in a
``finally``.
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
import asyncpg
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from chaos_client import User
from chaos_history import History
from chaos_workload import Workload
from chaos_world import Instance, World
from chaos_writes import Plan
from harness.lag import LoopLag
from harness.proxy_host import ProxyHostError

PG_GRACE_S: Final = 3.0  # after PostgreSQL is back (or reachable again), its pools reconnect
BULK_USERS: Final = 150  # a plain SQL statement over more than 100 users
OUTSIDE_CHANGE_SEEN_WITHIN_S: Final = 1.0  # what docs/cache.md promises of them
BURST_ADDS: Final = 20
BURST_READS: Final = 30
SATURATED_POOL: Final = {"DB_POOL_MAX_SIZE": "2", "DB_POOL_MIN_SIZE": "1"}
GROWING_TABLES: Final = ("points_transactions", "cache_outbox", "login_attempts", "users")
GATE_FIGURES: Final = frozenset(
    {
        "hita_db_queue_waits_total",
        "hita_db_queue_wait_seconds_total",
        "hita_db_connection_hold_seconds",
        "hita_db_shared_reads_total",
    }
)
USER_DETAILS_READS: Final = {
    "hita_cache_misses_total": "misses",
    "hita_cache_errors_total": "errors",
}
KILL_ROUNDS: Final = 3  # CLIENT KILL / pg_terminate_backend, repeated this often, 1 s apart


def queue_note(exposition: str) -> str:
    """What a burst did to an instance's PostgreSQL queue, from its Prometheus
    exposition: the requests that waited for a connection, their mean wait, the
    reads that shared a query instead, the running mean of how long a
    connection is held, ``hita_overload_refusals_total`` by
    reason (``"database_wait_budget 3, queue_delay 7"``, or ``"none"``), then
    ``cache_figures``. The exposition is parsed once."""
    samples = _samples(exposition)
    counts: dict[str, float] = {}
    gate: dict[str, float] = {}
    for sample in samples:
        if sample.name == "hita_overload_refusals_total":
            counts[sample.labels["reason"]] = sample.value
        elif sample.name in GATE_FIGURES:
            gate[sample.name] = sample.value
    refused = ", ".join(f"{k} {v:g}" for k, v in sorted(counts.items()) if v) or "none"
    cache = _cache_figures(samples)
    tail = f"refused: {refused}" + (f"; {cache}" if cache else "")
    if not gate:
        return tail
    waits = gate.get("hita_db_queue_waits_total", 0.0)
    mean_ms = 1000 * gate.get("hita_db_queue_wait_seconds_total", 0.0) / waits if waits else 0.0
    hold_ms = 1000 * gate.get("hita_db_connection_hold_seconds", 0.0)
    shared = gate.get("hita_db_shared_reads_total", 0.0)
    return (
        f"{waits:g} waited for a connection, {mean_ms:.0f} ms on average;"
        f" {shared:g} reads shared a query;"
        f" a connection held {hold_ms:.1f} ms (running mean); {tail}"
    )


def cache_figures(exposition: str) -> str:
    """What may send a request to PostgreSQL more often, from an exposition:
    invalidations no replica confirmed in time (``WAIT``), writes that then
    waited on the durable path (by outcome, and their seconds), the user
    details' misses and Redis errors: ``""`` when all are 0."""
    return _cache_figures(_samples(exposition))


def _samples(exposition: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(exposition) for s in family.samples]


def _cache_figures(samples: list[Sample]) -> str:
    figures: dict[str, float] = {}
    for sample in samples:
        name, labels = sample.name, sample.labels
        if name == "hita_cache_replica_wait_timeouts_total":
            figures["replica wait timeouts"] = sample.value
        elif name == "hita_cache_coherence_waits_total":
            figures[f"durable waits {labels['outcome']}"] = sample.value
        elif name == "hita_cache_coherence_wait_seconds_total":
            figures["durable wait s"] = sample.value
        elif name in USER_DETAILS_READS and labels.get("type") == "user_details":
            figures[f"user_details {USER_DETAILS_READS[name]}"] = sample.value
    return ", ".join(f"{name} {value:g}" for name, value in figures.items() if value)


class Skipped(Exception):
    """The fault could not be set up this time (the run goes on; not counted)."""


class DatabaseFaults:
    """The PostgreSQL faults, and what every fault has: the servers, the
    clients, the checker, the fault log and counts."""

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
        # How late this script's loop ran: its clients' answers wait behind it.
        self.lag = LoopLag()

    def note(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self.t0:7.1f} s  {text}")

    def victim(self) -> Instance:
        return self.rng.choice(self.world.instances)

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
        await victim.pg_proxy.set_mode("blackhole")
        try:
            await asyncio.sleep(seconds)
            await victim.pg_proxy.set_mode("reset")
            await asyncio.sleep(0.2)
        finally:
            await victim.pg_proxy.set_mode("pass")
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
            await cut.set_mode("blackhole")
        try:
            async with contextlib.AsyncExitStack() as locks:
                for user in users:
                    await locks.enter_async_context(user.lock)
                await self._rename_all(users)
                # no client writes them until the change counts as seen (ack times grow)
                await asyncio.sleep(OUTSIDE_CHANGE_SEEN_WITHIN_S)
            await asyncio.sleep(3 - OUTSIDE_CHANGE_SEEN_WITHIN_S)
        finally:
            if cut is not None:
                await cut.set_mode("pass")

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
        # A change made outside the service has no 2xx to promise anything by:
        # every instance takes it in within a renewal, so reads that start a
        # second later (docs/cache.md) must show it; earlier ones may show either.
        taken_in_by = time.monotonic() + OUTSIDE_CHANGE_SEEN_WITHIN_S
        for user in users:
            self.history.fields[user.id]["full_name"].ack(taken_in_by)

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
        self.note(f"tables before the burst: {await self._table_rows()}")
        if cut is not None:
            await cut.set_mode("blackhole")
        await self._proxies_lag()  # the proxies' figures start again here
        began, began_cpu, lag = time.monotonic(), time.process_time(), self.lag.mark()
        try:
            users = self.rng.sample(self.workload.users, BURST_ADDS)
            burst = [self._locked_add(user, victim) for user in users]
            burst += [self.workload.read_other_on(self.session, victim) for _ in range(BURST_READS)]
            await asyncio.gather(*burst)
        finally:
            took_s = time.monotonic() - began
            driver_s = time.process_time() - began_cpu
            if cut is not None:
                await cut.set_mode("pass")
            self.note(
                f"instance {victim.index}: burst took {took_s:.2f} s (this script's CPU"
                f" {driver_s:.2f} s, load {os.getloadavg()[0]:.1f};"
                f" {self.lag.since(lag).text()}; its proxies: {await self._proxies_lag()});"
                f" {await self._queue(victim)}"
            )
            await asyncio.to_thread(victim.stop)
            victim.start()
            await victim.wait()

    async def _proxies_lag(self) -> str:
        """How late the proxies' own loop ran since the last ask."""
        try:
            return await self.world.proxies.lag()
        except ProxyHostError as exc:
            return f"unknown ({exc})"

    async def _table_rows(self) -> str:
        """The rows of the tables that grow all run long: whether a late burst
        is slower for their size."""
        try:
            conn = await self.world.connect()
            try:
                counts = [
                    await conn.fetchval(f"SELECT count(*) FROM {table}") for table in GROWING_TABLES
                ]
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError) as exc:
            return f"unknown ({exc!r})"
        return ", ".join(f"{table} {n:,}" for table, n in zip(GROWING_TABLES, counts, strict=True))

    async def _queue(self, instance: Instance) -> str:
        """The instance's PostgreSQL queue since it started (``queue_note``):
        how long requests waited, and which queue refused, if any."""
        try:
            async with self.session.get(f"{instance.base}/metrics") as response:
                return queue_note(await response.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"unknown ({exc!r})"

    async def _locked_add(self, user: User, instance: Instance) -> None:
        plan = Plan("add", "POST", f"/v1.0/points/{user.id}/add", "points", amount=5)
        async with user.lock:
            await self.workload.write_locked(self.session, user, instance=instance, plan=plan)
