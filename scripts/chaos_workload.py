"""The chaos run's clients: random reads, writes and logins sent to random
live instances, every answer handed to the checker (``chaos_history``).

A quarter of the clients retry a write that answered 503 or nothing, as real
clients do. Every try of a points change carries its own ledger reason, so
the ledger read back after the run says which tries committed. A write with
no certain answer is read back from PostgreSQL (directly, not through any
proxy) before the next write to that user, and so is each try of a retry.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import asyncpg

from chaos_history import Answer, Attempt, Field, History
from chaos_world import Instance, World

FLAG: Final = "chaos.flag"
REQUEST_TIMEOUT_S: Final = 10.0
RETRIES: Final = 2  # a retrying client's tries after the first
RETRY_PAUSE_S: Final = (0.2, 1.0)
RETRYING_CLIENT_EVERY: Final = 4  # every 4th client retries
PROBE_READS: Final = 4
READ_BACK_PAUSE_S: Final = 0.5
READ_BACK = (
    "SELECT full_name, points, is_active,"
    " EXISTS (SELECT 1 FROM user_permissions WHERE user_id = $1 AND permission = $2) AS flag,"
    " (SELECT count(*) FROM points_transactions WHERE reason = $3) AS ledger_rows"
    " FROM users WHERE id = $1"
)


@dataclass
class User:
    """A seeded user as the clients know it."""

    id: str
    username: str
    password: str
    token: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    name_version: int = 0

    def next_name(self) -> str:
        self.name_version += 1
        return f"Chaos {self.id} v{self.name_version}"


@dataclass(frozen=True)
class Plan:
    kind: str
    method: str
    path: str
    field: str
    body: dict[str, Any] | None = None
    amount: int = 0  # points changes: added (negative: redeemed)


def view(user: dict[str, Any]) -> dict[str, Any]:
    """What the checker compares of a user document."""
    shown: dict[str, Any] = {
        k: user[k] for k in ("id", "full_name", "points", "is_active") if k in user
    }
    if "permissions" in user:
        shown["permissions"] = FLAG in user["permissions"]
    return shown


class Workload:
    def __init__(
        self,
        world: World,
        history: History,
        users: list[User],
        admin_token: str,
        rng: random.Random,
    ) -> None:
        self.world = world
        self.history = history
        self.users = users
        self.admin_token = admin_token
        self.rng = rng
        self.phase = "warm-up"
        self.stop_at = 0.0
        self.faults_done = asyncio.Event()
        self.chains = itertools.count(1)

    def running(self) -> bool:
        """Until the planned time is up and the fault schedule has finished."""
        return time.monotonic() < self.stop_at or not self.faults_done.is_set()

    # -- one request ---------------------------------------------------------------

    async def request(  # noqa: PLR0917 - a request and its natural parts
        self,
        session: aiohttp.ClientSession,
        kind: str,
        method: str,
        path: str,
        token: str | None,
        body: dict[str, Any] | None = None,
        instance: Instance | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Answer, Any]:
        target = instance or self.rng.choice(self.world.live())
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        status, data, is_json, error = 0, None, True, ""
        try:
            async with session.request(
                method,
                f"{target.base}{path}",
                json=body,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as response:
                status = response.status
                raw = await response.read()
                is_json = response.content_type == "application/json"
                if is_json:
                    data = json.loads(raw)
        except (TimeoutError, aiohttp.ClientError, OSError):
            status = 0
        except ValueError:  # announced as JSON, not JSON
            is_json = False
        if status >= 400 and isinstance(data, dict):
            error = str(data.get("error", ""))
        answer = Answer(
            kind, target.index, status, started, time.monotonic(), self.phase, is_json, error
        )
        self.history.answered(answer)
        return answer, data

    # -- reads -----------------------------------------------------------------------

    async def read_user(self, session: aiohttp.ClientSession) -> None:
        await self.read_user_of(session, self.rng.choice(self.users))

    async def read_user_of(
        self,
        session: aiohttp.ClientSession,
        user: User,
        instance: Instance | None = None,
        kind: str = "read_user",
    ) -> int:
        answer, data = await self.request(
            session, kind, "GET", f"/v1.0/user/{user.id}", self.admin_token, None, instance
        )
        if answer.status == 200:
            self.history.check_user(answer, view(data["user"]))
        return answer.status

    async def read_own(self, session: aiohttp.ClientSession) -> None:
        """The token check: a deactivated user's token is refused, an active one's accepted."""
        user = self.rng.choice(self.users)
        answer, data = await self.request(
            session, "token_check", "GET", f"/v1.0/user/{user.id}", user.token
        )
        if answer.status in (200, 401):
            self.history.check_user(answer, {"id": user.id, "is_active": answer.status == 200})
        if answer.status == 200:
            self.history.check_user(answer, view(data["user"]))

    async def read_list(self, session: aiohttp.ClientSession) -> None:
        page = self.rng.randint(1, max(1, len(self.users) // 50))
        query = f"/v1.0/user/list?page={page}&page_size=50"
        if self.rng.random() < 0.3:
            query += "&is_active=" + self.rng.choice(["true", "false"])
        answer, data = await self.request(session, "read_list", "GET", query, self.admin_token)
        if answer.status == 200:
            for item in data["users"]:
                self.history.check_user(answer, view(item))

    async def read_stats(self, session: aiohttp.ClientSession) -> None:
        path = self.rng.choice(["/v1.0/dashboard/stats", "/v1.0/user/stats"])
        answer, data = await self.request(session, "read_stats", "GET", path, self.admin_token)
        if answer.status == 200:
            self.history.check_totals(answer, data["stats"])

    async def read_other(self, session: aiohttp.ClientSession) -> None:
        await self.read_other_on(session)

    async def read_other_on(
        self, session: aiohttp.ClientSession, instance: Instance | None = None
    ) -> None:
        """A read PostgreSQL answers (no cache): points history or permissions."""
        user = self.rng.choice(self.users)
        path = self.rng.choice([f"/v1.0/points/{user.id}/history", f"/v1.0/permissions/{user.id}"])
        await self.request(session, "read_other", "GET", path, self.admin_token, None, instance)

    # -- logins ------------------------------------------------------------------------

    def _address(self) -> dict[str, str]:
        """Each login from its own client address (the service trusts
        X-Forwarded-For here), so the per-address throttle stays out of the way."""
        octets = ".".join(str(self.rng.randint(1, 254)) for _ in range(3))
        return {"X-Forwarded-For": f"10.{octets}"}

    async def login(
        self, session: aiohttp.ClientSession, *, right: bool, instance: Instance | None = None
    ) -> Answer:
        user = self.rng.choice(self.users)
        username = user.username if self.rng.random() < 0.9 else f"nobody.{secrets.token_hex(3)}"
        known = username == user.username
        password = user.password if right and known else f"wrong {secrets.token_hex(4)}"
        answer, data = await self.request(
            session,
            "login" if right and known else "login_wrong",
            "POST",
            "/v1.0/auth/login",
            None,
            {"username": username, "password": password},
            instance,
            self._address(),
        )
        self.history.login(
            answer, right_password=right and known, user_id=user.id if known else None
        )
        if answer.status == 200 and right and known:
            await self.read_own_with(session, user, data["access_token"])
        return answer

    async def read_own_with(self, session: aiohttp.ClientSession, user: User, token: str) -> None:
        answer, _ = await self.request(
            session, "token_from_login", "GET", f"/v1.0/user/{user.id}", token
        )
        if answer.status in (200, 401):
            self.history.check_user(answer, {"id": user.id, "is_active": answer.status == 200})

    async def any_login(self, session: aiohttp.ClientSession) -> None:
        await self.login(session, right=self.rng.random() < 0.5)

    async def login_probe(
        self, session: aiohttp.ClientSession, instance: Instance | None = None
    ) -> None:
        """The same reads on one instance before and after a failed login."""
        target = instance or self.rng.choice(self.world.live())
        picked = self.rng.sample(self.users, PROBE_READS)

        async def reads() -> list[int]:
            return [await self.read_user_of(session, u, target, "probe_read") for u in picked]

        before = await reads()
        login = await self.login(session, right=False, instance=target)
        if not 200 <= login.status < 300:
            self.history.login_probe(login, before, await reads())

    # -- writes --------------------------------------------------------------------------

    @staticmethod
    def rename_plan(user: User) -> Plan:
        body = {"full_name": user.next_name()}
        return Plan("rename", "PATCH", f"/v1.0/user/update/{user.id}", "full_name", body)

    def plan(self, user: User) -> Plan:
        kind = self.rng.choices(["rename", "add", "redeem", "toggle", "flag"], [3, 3, 1, 2, 2])[0]
        fields = self.history.fields[user.id]
        if kind == "rename":
            return self.rename_plan(user)
        if kind in ("add", "redeem"):
            amount = self.rng.randint(1, 20)
            if kind == "redeem" and fields["points"].last < amount:
                kind = "add"
            sign = 1 if kind == "add" else -1
            return Plan(
                kind, "POST", f"/v1.0/points/{user.id}/{kind}", "points", amount=sign * amount
            )
        if kind == "toggle":
            action = "deactivate" if fields["is_active"].last else "activate"
            return Plan(kind, "POST", f"/v1.0/user/{user.id}/{action}", "is_active")
        action = "revoke" if fields["permissions"].last else "grant"
        path = f"/v1.0/permissions/{user.id}/{action}"
        return Plan(kind, "POST", path, "permissions", {"permission": FLAG})

    @staticmethod
    def value_after(plan: Plan, history: Field) -> Any:
        if plan.kind in ("add", "redeem"):
            return history.last + plan.amount
        if plan.kind == "rename":
            assert plan.body is not None
            return plan.body["full_name"]
        return plan.path.rsplit("/", 1)[1] in ("activate", "grant")

    async def write(self, session: aiohttp.ClientSession, retries: bool = False) -> None:
        if self.rng.random() < 0.03:
            await self.create(session)
            return
        user = self.rng.choice(self.users)
        async with user.lock:
            await self.write_locked(session, user, retries=retries)

    async def write_locked(
        self,
        session: aiohttp.ClientSession,
        user: User,
        *,
        retries: bool = False,
        instance: Instance | None = None,
        plan: Plan | None = None,
    ) -> Answer:
        """One write to ``user`` (whose lock the caller holds), retried by a
        retrying client after a 503 or no answer; each try is read back from
        PostgreSQL unless it was answered 2xx or 4xx."""
        plan = plan or self.plan(user)
        history = self.history.fields[user.id][plan.field]
        chain = next(self.chains)
        for attempt_no in range(1 + (RETRIES if retries else 0)):
            body, key = plan.body, None
            if plan.amount:
                key = f"chaos {chain}.{attempt_no}"
                body = {"amount": abs(plan.amount), "reason": key}
            value = self.value_after(plan, history)
            # A retry of a rename or a toggle whose earlier try committed cannot
            # tell by reading back whether it committed too: it is not judged.
            knowable = plan.amount != 0 or history.last != value
            history.begin(value)
            answer, _ = await self.request(
                session,
                f"write_{plan.kind}",
                plan.method,
                plan.path,
                self.admin_token,
                body,
                instance,
            )
            attempt = Attempt(chain, plan.kind, user.id, answer, key)
            self.history.attempted(attempt)
            if 200 <= answer.status < 300:
                history.ack(answer.ended)
                if plan.amount > 0:
                    self.history.issued.append((answer.ended, plan.amount))
                return answer
            if 400 <= answer.status < 500:
                history.drop()
                return answer
            committed = await self.read_back(user, plan.field, key)
            attempt.committed = committed if knowable else None
            if not retries or answer.status not in (0, 503):
                return answer
            await asyncio.sleep(self.rng.uniform(*RETRY_PAUSE_S))
        return answer

    async def read_back(self, user: User, field_name: str, key: str | None) -> bool:
        """Settle every field of ``user`` from PostgreSQL; whether the write in
        flight on ``field_name`` committed (for a points change: its ledger row)."""
        row = await self.fetch_row(READ_BACK, user.id, FLAG, key or "")
        now = time.monotonic()
        fields = self.history.fields[user.id]
        committed = False
        for name, value in (
            ("full_name", row["full_name"]),
            ("points", row["points"]),
            ("is_active", row["is_active"]),
            ("permissions", row["flag"]),
        ):
            settled = fields[name].settle(value, now)
            committed = committed or (name == field_name and settled)
        if " v" in row["full_name"]:
            user.name_version = max(user.name_version, int(row["full_name"].rsplit(" v", 1)[1]))
        return bool(row["ledger_rows"]) if key else committed

    async def fetch_row(self, query: str, *args: Any) -> asyncpg.Record:
        """One row from PostgreSQL itself, retried until it answers."""
        while True:
            try:
                conn = await self.world.connect()
                try:
                    row = await conn.fetchrow(query, *args)
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                await asyncio.sleep(READ_BACK_PAUSE_S)
                continue
            assert row is not None
            return row

    async def create(self, session: aiohttp.ClientSession) -> None:
        name = f"new.{secrets.token_hex(4)}"
        body = {
            "username": name,
            "email": f"{name}@chaos.example",
            "full_name": "Chaos New",
            "password": "correct horse battery",
        }
        answer, _ = await self.request(
            session, "write_create", "POST", "/v1.0/user/create", self.admin_token, body
        )
        attempt = Attempt(next(self.chains), "create", "-", answer, key=name)
        self.history.attempted(attempt)
        if answer.status == 0 or answer.status >= 500:
            row = await self.fetch_row("SELECT count(*) AS n FROM users WHERE username = $1", name)
            attempt.committed = bool(row["n"])

    # -- a client ------------------------------------------------------------------------

    async def client(self, session: aiohttp.ClientSession, index: int) -> None:
        retries = index % RETRYING_CLIENT_EVERY == 0

        async def write(s: aiohttp.ClientSession) -> None:
            await self.write(s, retries=retries)

        actions: list[tuple[float, Callable[[aiohttp.ClientSession], Awaitable[Any]]]] = [
            (30, self.read_user),
            (15, self.read_own),
            (12, self.read_list),
            (10, self.read_stats),
            (8, self.read_other),
            (25, write),
            (3, self.any_login),
            (0.5, self.login_probe),
        ]
        weights = [w for w, _ in actions]
        calls = [a for _, a in actions]
        while self.running():
            await self.rng.choices(calls, weights)[0](session)
            if not any(i.up for i in self.world.instances):
                await asyncio.sleep(0.05)
