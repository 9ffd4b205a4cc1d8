"""The chaos run's writes: one write to a user at a time (the client holds
the user's lock), retried by a retrying client after a 503 or no answer, as
real clients do. A points change carries its own ledger reason and an
``Idempotency-Key``, the same on each of its tries, so the ledger read back
after the run says whether it committed, and how many times. A try with
no certain answer is read back from PostgreSQL (directly, not through any
proxy) before the next write to that user.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import asyncpg

from chaos_client import FLAG, Client, User
from chaos_history import Answer, Attempt, Field
from chaos_world import Instance

RETRIES: Final = 2  # a retrying client's tries after the first
RETRY_PAUSE_S: Final = (0.2, 1.0)
READ_BACK_PAUSE_S: Final = 0.5
READ_BACK = (
    "SELECT full_name, points, is_active,"
    " EXISTS (SELECT 1 FROM user_permissions WHERE user_id = $1 AND permission = $2) AS flag,"
    " (SELECT count(*) FROM points_transactions WHERE reason = $3) AS ledger_rows"
    " FROM users WHERE id = $1"
)


@dataclass(frozen=True)
class Plan:
    kind: str
    method: str
    path: str
    field: str
    body: dict[str, Any] | None = None
    amount: int = 0  # points changes: added (negative: redeemed)


class Writes(Client):
    chains = itertools.count(1)  # a write and its retries share one number

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
        body, key, headers = plan.body, None, None
        if plan.amount:  # every try of one points change: one reason, one Idempotency-Key
            key = f"chaos {chain}"
            body = {"amount": abs(plan.amount), "reason": key}
            headers = {"Idempotency-Key": f"chaos-{chain}"}
        # What the field holds once the write commits, the same for every try:
        # a retry after a try that committed (read back so) is answered as a
        # replay of it, it does not add its amount again.
        value = self.value_after(plan, history)
        for _ in range(1 + (RETRIES if retries else 0)):
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
                headers,
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
