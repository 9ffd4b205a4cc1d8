"""The chaos run's client side: the users as the clients know them, and one
HTTP request to a live instance whose answer goes to the checker
(``chaos_history``). ``chaos_writes`` and ``chaos_workload`` build on it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from chaos_history import Answer, History
from chaos_world import Instance, World

FLAG: Final = "chaos.flag"
REQUEST_TIMEOUT_S: Final = 10.0


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


def view(user: dict[str, Any]) -> dict[str, Any]:
    """What the checker compares of a user document."""
    shown: dict[str, Any] = {
        k: user[k] for k in ("id", "full_name", "points", "is_active") if k in user
    }
    if "permissions" in user:
        shown["permissions"] = FLAG in user["permissions"]
    return shown


class Client:
    """Requests to random live instances (or a given one), each answer recorded."""

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
        self.phase = "warm-up"  # stamped on every answer

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
        status, data, is_json, error, replayed = 0, None, True, "", False
        try:
            async with session.request(
                method,
                f"{target.base}{path}",
                json=body,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as response:
                status = response.status
                replayed = response.headers.get("Idempotent-Replayed") == "true"
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
            kind,
            target.index,
            status,
            started,
            time.monotonic(),
            self.phase,
            is_json,
            error,
            replayed,
        )
        self.history.answered(answer)
        return answer, data

    # -- reads -----------------------------------------------------------------------
