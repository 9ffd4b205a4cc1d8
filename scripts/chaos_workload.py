"""The chaos run's clients: random reads, writes and logins sent to random
live instances, every answer handed to the checker (``chaos_history``).
A quarter of the clients retry their writes (``chaos_writes``)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp

from chaos_client import User, view
from chaos_history import Answer
from chaos_world import Instance
from chaos_writes import Writes

RETRYING_CLIENT_EVERY: Final = 4  # every 4th client retries
PROBE_READS: Final = 4


class Workload(Writes):
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
            after = await reads()
            self.history.login_probe(login, before, after, time.monotonic())

    # -- writes --------------------------------------------------------------------------

    async def client(
        self, session: aiohttp.ClientSession, index: int, running: Callable[[], bool]
    ) -> None:
        """One client's loop, for as long as ``running()`` says."""
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
        while running():
            await self.rng.choices(calls, weights)[0](session)
            if not any(i.up for i in self.world.instances):
                await asyncio.sleep(0.05)
