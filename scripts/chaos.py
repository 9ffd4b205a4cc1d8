"""Chaos test: no read older than an acknowledged write, on any instance, under faults.

Starts its own PostgreSQL and Redis (127.0.0.1 / unix sockets), two
``hita serve`` instances in the production profile, and random concurrent
reads and writes sent to random instances, while a schedule of faults runs:
Redis paused (SIGSTOP), Redis killed and restarted empty, Redis slowed by
``DEBUG SLEEP`` bursts, PostgreSQL stopped, and one instance killed with -9
right after a write was acknowledged while Redis is paused. Then a history
checker finds every read that showed data older than a write acknowledged
before the read was sent.

    .venv/bin/python scripts/chaos.py --minutes 9 --report docs/chaos.md

Writes to one user are serialized by the client, so every field has one
history: the values it took, in commit order, with the time each write was
acknowledged. A read started at t must show, for each field, a value the
field held at or after the last write acknowledged before t. A write whose
outcome is unknown (no answer) is reconciled from PostgreSQL before the next
write to that user. Aggregates are checked as bounds: total users and points
issued never go below what acknowledged creates and adds imply.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hita.db.migrate import apply_migrations  # noqa: E402
from hita.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402

from bench_common import free_port  # noqa: E402

SECRET = secrets.token_hex(32)
FLAG = "chaos.flag"
PG_GRACE_S = 3.0  # after PostgreSQL is back, its pools reconnect
REQUEST_TIMEOUT_S = 10.0


def token(user_id: str, role: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": user_id, "role": role, "iat": now, "exp": now + 86_400}, SECRET, algorithm="HS256"
    )


# -- histories ------------------------------------------------------------------


@dataclasses.dataclass
class Field:
    """The values one field took, in commit order, with acknowledgement times.
    A write in flight is the last value, acknowledged at +inf until it is."""

    values: list[Any]
    acked_at: list[float]  # acked_at[i]: when the write that set values[i] was acked

    def begin(self, value: Any) -> None:
        self.values.append(value)
        self.acked_at.append(float("inf"))

    def ack(self, at: float) -> None:
        self.acked_at[-1] = at

    def drop(self) -> None:
        self.values.pop()
        self.acked_at.pop()

    def settle(self, truth: Any, at: float) -> None:
        """An unknown outcome, resolved from PostgreSQL."""
        if self.acked_at[-1] == float("inf"):
            if self.values[-1] == truth:
                self.ack(at)
                return
            self.drop()
        if self.values[-1] != truth:
            self.values.append(truth)
            self.acked_at.append(at)

    def allowed_from(self, started: float) -> list[Any]:
        """Values a read started at ``started`` may show: from the last one
        acknowledged before it on (ack times only grow; a write in flight is last)."""
        last = max(0, bisect.bisect_left(self.acked_at, started) - 1)
        return self.values[last:]


def new_field(value: Any) -> Field:
    return Field([value], [0.0])


@dataclasses.dataclass
class UserState:
    id: str
    token: str
    fields: dict[str, Field]
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    name_version: int = 0


@dataclasses.dataclass
class Stale:
    route: str
    instance: int
    user_id: str
    field: str
    shown: Any
    allowed: list[Any]
    read_started: float
    phase: str


class History:
    def __init__(self, users: dict[str, UserState], total_users: int) -> None:
        self.users = users
        self.created: list[float] = []  # ack times of creates
        self.issued: list[tuple[float, int]] = []  # ack times and amounts of adds
        self.base_users = total_users
        self.stale: list[Stale] = []
        self.reads_checked = 0

    def check_user(
        self, route: str, instance: int, shown: dict[str, Any], started: float, phase: str
    ) -> None:
        state = self.users.get(str(shown.get("id")))
        if state is None:
            return
        self.reads_checked += 1
        for name, field in state.fields.items():
            if name not in shown:
                continue
            value = shown[name]
            if name == "permissions":
                value = FLAG in value
                name_shown = "has_flag"
            else:
                name_shown = name
            allowed = field.allowed_from(started)
            if value not in allowed:
                self.stale.append(
                    Stale(route, instance, state.id, name_shown, value, allowed, started, phase)
                )

    def check_totals(
        self, route: str, instance: int, stats: dict[str, Any], started: float, phase: str
    ) -> None:
        self.reads_checked += 1
        users_floor = self.base_users + sum(1 for at in self.created if at < started)
        if stats.get("total_users", users_floor) < users_floor:
            self.stale.append(
                Stale(
                    route,
                    instance,
                    "-",
                    "total_users",
                    stats["total_users"],
                    [users_floor],
                    started,
                    phase,
                )
            )
        issued_floor = sum(amount for at, amount in self.issued if at < started)
        issued = stats.get("points_issued_last_30_days")
        if issued is not None and issued < issued_floor:
            self.stale.append(
                Stale(route, instance, "-", "points_issued", issued, [issued_floor], started, phase)
            )


# -- the world ------------------------------------------------------------------


class Instance:
    def __init__(self, index: int, env: dict[str, str], logs: Path) -> None:
        self.index = index
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port)}
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.up = False
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.logs / f"instance{self.index}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hita", "serve"],
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=ROOT,
        )

    async def wait_healthy(self, session: aiohttp.ClientSession, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with session.get(f"{self.base}/v1.0/health") as response:
                    if response.status in (200, 503):
                        self.up = True
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"instance {self.index} did not start; see {self.logs}")

    def kill(self) -> None:
        self.up = False
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.up = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclasses.dataclass
class Op:
    kind: str
    instance: int
    status: int  # 0: no answer (connection refused, reset, timeout)
    latency_s: float
    phase: str
    started: float
    pg_up: bool


class Chaos:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.rng = random.Random(args.seed)
        self.postgres = EmbeddedPostgres(root / "pg", database="hita_chaos", durable=False)
        self.redis = EmbeddedRedis(root / "redis", port=free_port())
        self.instances: list[Instance] = []
        self.ops: list[Op] = []
        self.phase = "warm-up"
        self.pg_down_since: float | None = None
        self.pg_back_at = 0.0
        self.faults: Counter[str] = Counter()
        self.fault_log: list[str] = []
        self.admin_token = ""
        self.history: History
        self.stop_at = 0.0
        self.t0 = time.monotonic()
        self.unknown_outcomes = 0

    # -- setup -----------------------------------------------------------------

    async def setup(self) -> None:
        self.postgres.start()
        self.redis.start()
        conn = await asyncpg.connect(self.postgres.url)
        try:
            await apply_migrations(conn)
            admin_id = "1000000000"
            rows = [(admin_id, "chaos.admin", "admin", "admin")]
            for i in range(self.args.users):
                rows.append((f"{2000000000 + i}", f"guest{i}", "user", "user"))
            await conn.copy_records_to_table(
                "users",
                records=[
                    (uid, name, f"{name}@chaos.example", f"Chaos {name} v0", "x", role)
                    for uid, name, _, role in rows
                ],
                columns=["id", "username", "email", "full_name", "password_hash", "role"],
            )
            await conn.execute("DELETE FROM cache_outbox")
        finally:
            await conn.close()
        self.admin_token = token(admin_id, "admin")
        users = {}
        for uid, name, _, role in rows[1:]:
            users[uid] = UserState(
                uid,
                token(uid, role),
                {
                    "full_name": new_field(f"Chaos {name} v0"),
                    "points": new_field(0),
                    "is_active": new_field(True),
                    "permissions": new_field(False),
                },
            )
        self.history = History(users, len(rows))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HITA_", "REDIS", "DB_"))}
        env.update(
            HITA_ENV="production",
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            JWT_SECRET=SECRET,
            HOST="127.0.0.1",
            LOG_LEVEL="WARNING",
            LOG_FORMAT="json",
            HITA_DATA_DIR=str(self.root / "data"),
            STATS_REFRESH_INTERVAL_S="5",
            DB_COMMAND_TIMEOUT_S="5",
            DB_ACQUIRE_TIMEOUT_S="3",
        )
        for index in range(2):
            self.instances.append(Instance(index, env, self.root))
        for instance in self.instances:
            instance.start()

    # -- one request -----------------------------------------------------------

    def pg_up(self, at: float) -> bool:
        if self.pg_down_since is not None:
            return False
        return at >= self.pg_back_at

    async def request(  # noqa: PLR0917 - a request and its natural parts
        self,
        session: aiohttp.ClientSession,
        kind: str,
        method: str,
        path: str,
        auth: str,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, Any, int, float]:
        live = [i for i in self.instances if i.up] or self.instances
        instance = self.rng.choice(live)
        started = time.monotonic()
        status, data = 0, None
        try:
            async with session.request(
                method,
                f"{instance.base}{path}",
                json=body,
                headers={"Authorization": f"Bearer {auth}"},
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as response:
                status = response.status
                if response.content_type == "application/json":
                    data = await response.json()
        except (TimeoutError, aiohttp.ClientError, OSError):
            status = 0
        ended = time.monotonic()
        self.ops.append(
            Op(
                kind,
                instance.index,
                status,
                ended - started,
                self.phase,
                started,
                self.pg_up(started) and self.pg_up(ended),
            )
        )
        return status, data, instance.index, started

    # -- reads -----------------------------------------------------------------

    async def read_user(self, session: aiohttp.ClientSession) -> None:
        state = self.rng.choice(list(self.history.users.values()))
        status, data, inst, started = await self.request(
            session, "read_user", "GET", f"/v1.0/user/{state.id}", self.admin_token
        )
        if status == 200:
            self.history.check_user("user", inst, data["user"], started, self.phase)

    async def read_own(self, session: aiohttp.ClientSession) -> None:
        """The token check: a deactivated user's token is refused, an active one's accepted."""
        state = self.rng.choice(list(self.history.users.values()))
        status, data, inst, started = await self.request(
            session, "token_check", "GET", f"/v1.0/user/{state.id}", state.token
        )
        if status in (200, 401):
            self.history.check_user(
                "token_check",
                inst,
                {"id": state.id, "is_active": status == 200},
                started,
                self.phase,
            )
        if status == 200:
            self.history.check_user("token_check", inst, data["user"], started, self.phase)

    async def read_list(self, session: aiohttp.ClientSession) -> None:
        page = self.rng.randint(1, max(1, self.args.users // 50))
        query = f"/v1.0/user/list?page={page}&page_size=50"
        if self.rng.random() < 0.3:
            query += "&is_active=" + self.rng.choice(["true", "false"])
        status, data, inst, started = await self.request(
            session, "read_list", "GET", query, self.admin_token
        )
        if status == 200:
            for item in data["users"]:
                self.history.check_user("list", inst, item, started, self.phase)

    async def read_stats(self, session: aiohttp.ClientSession) -> None:
        path = self.rng.choice(["/v1.0/dashboard/stats", "/v1.0/user/stats"])
        status, data, inst, started = await self.request(
            session, "read_stats", "GET", path, self.admin_token
        )
        if status == 200:
            self.history.check_totals(path, inst, data["stats"], started, self.phase)

    async def read_other(self, session: aiohttp.ClientSession) -> None:
        state = self.rng.choice(list(self.history.users.values()))
        path = self.rng.choice(
            [f"/v1.0/points/{state.id}/history", f"/v1.0/permissions/{state.id}"]
        )
        await self.request(session, "read_other", "GET", path, self.admin_token)

    # -- writes ----------------------------------------------------------------

    async def write(self, session: aiohttp.ClientSession) -> None:
        if self.rng.random() < 0.03:
            await self.create(session)
            return
        state = self.rng.choice(list(self.history.users.values()))
        async with state.lock:
            await self.write_locked(session, state)

    async def write_locked(self, session: aiohttp.ClientSession, state: UserState) -> int:
        kind = self.rng.choices(
            ["rename", "add", "redeem", "toggle", "flag"], weights=[3, 3, 1, 2, 2]
        )[0]
        fields = state.fields
        if kind == "rename":
            state.name_version += 1
            value: Any = f"Chaos {state.id} v{state.name_version}"
            method, path, body, field = (
                "PATCH",
                f"/v1.0/user/update/{state.id}",
                {"full_name": value},
                "full_name",
            )
        elif kind in ("add", "redeem"):
            balance = fields["points"].values[-1]
            amount = self.rng.randint(1, 20)
            if kind == "redeem" and balance < amount:
                kind = "add"
            value = balance + amount if kind == "add" else balance - amount
            method, path, body, field = (
                "POST",
                f"/v1.0/points/{state.id}/{kind}",
                {
                    "amount": amount,
                    "reason": "chaos",
                },
                "points",
            )
        elif kind == "toggle":
            value = not fields["is_active"].values[-1]
            action = "activate" if value else "deactivate"
            method, path, body, field = "POST", f"/v1.0/user/{state.id}/{action}", None, "is_active"
        else:
            value = not fields["permissions"].values[-1]
            action = "grant" if value else "revoke"
            method, path, body, field = (
                "POST",
                f"/v1.0/permissions/{state.id}/{action}",
                {"permission": FLAG},
                "permissions",
            )
        fields[field].begin(value)
        status, _data, _inst, _started = await self.request(
            session, f"write_{kind}", method, path, self.admin_token, body
        )
        if 200 <= status < 300:
            fields[field].ack(time.monotonic())
            if kind == "add":
                self.history.issued.append((time.monotonic(), body["amount"]))  # type: ignore[index]
        elif status == 0 or status >= 500:
            self.unknown_outcomes += 1
            await self.reconcile(state)
        else:
            fields[field].drop()
            if kind == "rename":
                state.name_version -= 1
        return status

    async def create(self, session: aiohttp.ClientSession) -> None:
        n = secrets.token_hex(4)
        status, _, _, _ = await self.request(
            session,
            "write_create",
            "POST",
            "/v1.0/user/create",
            self.admin_token,
            {
                "username": f"new.{n}",
                "email": f"new.{n}@chaos.example",
                "full_name": "Chaos New",
                "password": "correct horse battery",
            },
        )
        if status == 201:
            self.history.created.append(time.monotonic())

    async def reconcile(self, state: UserState) -> None:
        """A write with no known outcome: read the truth before the next write."""
        while True:
            try:
                conn = await asyncpg.connect(self.postgres.url, timeout=2)
                try:
                    row = await conn.fetchrow(
                        "SELECT full_name, points, is_active, EXISTS (SELECT 1 FROM"
                        " user_permissions WHERE user_id = $1 AND permission = $2) AS flag"
                        " FROM users WHERE id = $1",
                        state.id,
                        FLAG,
                    )
                finally:
                    await conn.close()
                break
            except (TimeoutError, OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.5)
        now = time.monotonic()
        assert row is not None
        fields = state.fields
        for name, value in (
            ("full_name", row["full_name"]),
            ("points", row["points"]),
            ("is_active", row["is_active"]),
            ("permissions", row["flag"]),
        ):
            fields[name].settle(value, now)
        if " v" in row["full_name"]:
            state.name_version = int(row["full_name"].rsplit(" v", 1)[1])

    # -- clients -----------------------------------------------------------------

    async def client(self, session: aiohttp.ClientSession) -> None:
        actions: list[tuple[float, Callable[[aiohttp.ClientSession], Awaitable[None]]]] = [
            (30, self.read_user),
            (15, self.read_own),
            (12, self.read_list),
            (10, self.read_stats),
            (8, self.read_other),
            (25, self.write),
        ]
        weights = [w for w, _ in actions]
        calls = [a for _, a in actions]
        while time.monotonic() < self.stop_at:
            action = self.rng.choices(calls, weights)[0]
            await action(session)
            if not any(i.up for i in self.instances):
                await asyncio.sleep(0.05)

    # -- faults ------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.fault_log.append(f"{time.monotonic() - self.t0:7.1f} s  {text}")

    async def redis_pause(self) -> None:
        seconds = self.rng.uniform(4, 6)
        self.note(f"Redis SIGSTOP for {seconds:.1f} s")
        self.redis.process.pause()
        await asyncio.sleep(seconds)
        self.redis.process.resume()

    async def redis_kill(self) -> None:
        self.note("Redis SIGKILL, restarted empty")
        self.redis.process.kill()
        await asyncio.sleep(self.rng.uniform(0.5, 1.5))
        await asyncio.to_thread(self.redis.start)

    async def redis_slow(self) -> None:
        seconds = self.rng.uniform(6, 10)
        self.note(f"Redis DEBUG SLEEP bursts for {seconds:.1f} s")
        client = Redis.from_url(self.redis.url, socket_timeout=5)
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                with contextlib.suppress(Exception):
                    pause = f"{self.rng.uniform(0.3, 0.9):.2f}"
                    await client.execute_command("DEBUG", "SLEEP", pause)  # type: ignore[no-untyped-call]
                await asyncio.sleep(self.rng.uniform(0.05, 0.3))
        finally:
            await client.aclose()

    async def pg_stop(self) -> None:
        self.note("PostgreSQL stopped for 4 s")
        self.pg_down_since = time.monotonic()
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(4)
        await asyncio.to_thread(self.postgres.start)
        self.pg_down_since = None
        self.pg_back_at = time.monotonic() + PG_GRACE_S

    async def kill_writer(self, session: aiohttp.ClientSession) -> None:
        """Redis paused; a write acknowledged by one instance; that instance -9 at once."""
        victim = self.rng.choice(self.instances)
        self.note(f"Redis paused; instance {victim.index} killed -9 right after an acked write")
        self.redis.process.pause()
        try:
            state = self.rng.choice(list(self.history.users.values()))
            async with state.lock:
                kind_value = state.name_version + 1
                body = {"full_name": f"Chaos {state.id} v{kind_value}"}
                state.fields["full_name"].begin(body["full_name"])
                started = time.monotonic()
                try:
                    async with session.patch(
                        f"{victim.base}/v1.0/user/update/{state.id}",
                        json=body,
                        headers={"Authorization": f"Bearer {self.admin_token}"},
                        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
                    ) as response:
                        status = response.status
                except (TimeoutError, aiohttp.ClientError, OSError):
                    status = 0
                victim.kill()
                self.ops.append(
                    Op(
                        "write_rename",
                        victim.index,
                        status,
                        time.monotonic() - started,
                        self.phase,
                        started,
                        self.pg_up(started),
                    )
                )
                if status == 200:
                    state.name_version = kind_value
                    state.fields["full_name"].ack(time.monotonic())
                else:
                    await self.reconcile(state)
            await asyncio.sleep(self.rng.uniform(1.5, 3))
        finally:
            self.redis.process.resume()
        victim.start()
        await victim.wait_healthy(session)

    async def fault_schedule(self, session: aiohttp.ClientSession) -> None:
        kinds = ["redis_pause", "redis_kill", "redis_slow", "pg_stop", "kill_writer"]
        plan = kinds * self.args.faults_each
        self.rng.shuffle(plan)
        span = self.stop_at - time.monotonic() - 20
        gap = span / len(plan)
        await asyncio.sleep(5)
        for kind in plan:
            if time.monotonic() > self.stop_at - 15:
                break
            self.phase = kind
            started = time.monotonic()
            if kind == "kill_writer":
                await self.kill_writer(session)
            else:
                await getattr(self, kind)()
            self.faults[kind] += 1
            self.phase = f"after {kind}"
            await asyncio.sleep(3)
            self.phase = "normal"
            await asyncio.sleep(max(0.5, gap - (time.monotonic() - started) - 3))
        self.phase = "normal"

    # -- run -----------------------------------------------------------------------

    async def run(self) -> int:
        await self.setup()
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.args.clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            for instance in self.instances:
                await instance.wait_healthy(session)
            self.t0 = time.monotonic()
            self.stop_at = self.t0 + self.args.minutes * 60
            self.phase = "normal"
            clients = [asyncio.create_task(self.client(session)) for _ in range(self.args.clients)]
            faults = asyncio.create_task(self.fault_schedule(session))
            await asyncio.gather(*clients)
            await faults
        return self.report()

    def close(self) -> None:
        for instance in self.instances:
            instance.stop()
        with contextlib.suppress(Exception):
            self.redis.process.resume()
        self.redis.stop()
        self.postgres.stop()

    # -- report ----------------------------------------------------------------------

    def report(self) -> int:
        elapsed = time.monotonic() - self.t0
        ops = [op for op in self.ops if op.started >= self.t0]
        five_up = [op for op in ops if op.status >= 500 and op.pg_up]
        five_down = [op for op in ops if op.status >= 500 and not op.pg_up]
        no_answer = [op for op in ops if op.status == 0]
        stale = self.history.stale
        lines = [
            "# Chaos run",
            "",
            f"Command: `.venv/bin/python scripts/chaos.py --minutes {self.args.minutes:g}"
            f" --clients {self.args.clients} --users {self.args.users}"
            f" --faults-each {self.args.faults_each} --seed {self.args.seed}`",
            "",
            "Two `hita serve` instances (production profile) on one PostgreSQL 16 and one"
            " Redis 6.2 that the script owns; every request to a random live instance.",
            "",
            "| figure | value |",
            "| --- | ---: |",
            f"| duration | {elapsed / 60:.1f} min |",
            f"| operations | {len(ops):,} |",
            f"| reads checked against the history | {self.history.reads_checked:,} |",
            f"| **stale reads** | **{len(stale)}** |",
            f"| **5xx while PostgreSQL was up** | **{len(five_up)}** |",
            f"| 5xx while PostgreSQL was down (or reconnecting, {PG_GRACE_S:g} s) |"
            f" {len(five_down)} |",
            f"| no answer (instance killed, connection reset) | {len(no_answer)} |",
            f"| writes of unknown outcome, read back from PostgreSQL | {self.unknown_outcomes} |",
            "",
            "Faults: "
            + ", ".join(f"{kind} x{count}" for kind, count in sorted(self.faults.items())),
            "",
            "## Operations",
            "",
            "| kind | count | 2xx | 4xx | 5xx | no answer |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        by_kind: dict[str, list[Op]] = defaultdict(list)
        for op in ops:
            by_kind[op.kind].append(op)
        for kind, items in sorted(by_kind.items()):
            lines.append(
                f"| {kind} | {len(items):,} | {sum(200 <= o.status < 300 for o in items):,} |"
                f" {sum(400 <= o.status < 500 for o in items):,} |"
                f" {sum(o.status >= 500 for o in items):,} |"
                f" {sum(o.status == 0 for o in items):,} |"
            )
        lines += [
            "",
            "## Latency per phase",
            "",
            "| phase | ops | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        by_phase: dict[str, list[float]] = defaultdict(list)
        for op in ops:
            by_phase[op.phase].append(op.latency_s * 1000)
        for phase, values in sorted(by_phase.items()):
            values.sort()
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            lines.append(
                f"| {phase} | {len(values):,} | {statistics.median(values):.1f} | {p99:.1f} |"
            )
        if stale:
            lines += ["", "## Stale reads (first 30)", ""]
            for s in stale[:30]:
                lines.append(
                    f"- {s.route} on instance {s.instance}, user {s.user_id}, {s.field}:"
                    f" showed {s.shown!r}, allowed {s.allowed!r}, read at"
                    f" {s.read_started - self.t0:.2f} s ({s.phase})"
                )
        if five_up:
            lines += ["", "## 5xx while PostgreSQL was up", ""]
            counts = Counter((o.kind, o.status, o.phase) for o in five_up)
            for (kind, status, phase), n in counts.most_common(20):
                lines.append(f"- {kind} {status} during {phase}: {n}")
        lines += ["", "## Fault log", "", "```", *self.fault_log, "```", ""]
        text = "\n".join(lines)
        print(text)
        if self.args.report:
            Path(self.args.report).write_text(text)
        return 1 if stale or five_up else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=9.0)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--faults-each", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", default=None, help="write the markdown report here")
    args = parser.parse_args()
    (ROOT / ".hita").mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="chaos-", dir=ROOT / ".hita"))
    chaos = Chaos(args, root)
    try:
        return asyncio.run(chaos.run())
    finally:
        chaos.close()
        print(f"logs: {root}")


if __name__ == "__main__":
    raise SystemExit(main())
