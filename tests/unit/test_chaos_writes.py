"""The chaos run's retrying writer (scripts/chaos_writes.py) against a scripted
service and PostgreSQL: what the history expects after a retry must be what
PostgreSQL holds, whichever try committed."""

from __future__ import annotations

import random
from typing import Any

import aiohttp

from chaos_client import User
from chaos_history import Answer, History
from chaos_world import Instance
from chaos_writes import Plan, Writes

USER = "2000000001"


class Scripted(Writes):
    """Each try of a points change commits or not as scripted and is answered
    with the scripted status; a try whose key already left its row is answered
    as a replay (the service's Idempotency-Key). ``fetch_row`` reads this
    PostgreSQL back."""

    def __init__(self, tries: list[tuple[bool, int]], points: int) -> None:
        super().__init__(None, History(0), [], "token", random.Random(1))  # type: ignore[arg-type]
        self.tries = tries
        self.points = points
        self.ledger: set[str] = set()
        self.history.track(USER, full_name="n", points=points, is_active=True, permissions=False)

    async def request(  # noqa: PLR0917 - the signature it stands in for
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
        assert body is not None
        assert headers is not None
        commits, status = self.tries.pop(0)
        key = headers["Idempotency-Key"]
        replayed = key in self.ledger
        if commits and not replayed:
            self.ledger.add(key)
            self.points += body["amount"] if path.endswith("/add") else -body["amount"]
        at = float(len(self.history.answers))
        answer = Answer(kind, 0, status, at, at + 0.5, "p", replayed=replayed and status == 200)
        self.history.answered(answer)
        return answer, None

    async def fetch_row(self, query: str, *args: Any) -> Any:
        reason = args[2]
        return {
            "full_name": "n",
            "points": self.points,
            "is_active": True,
            "flag": False,
            "ledger_rows": int(f"chaos-{reason.split()[1]}" in self.ledger),
        }


async def change(amount: int, tries: list[tuple[bool, int]]) -> Scripted:
    writer = Scripted(tries, points=100)
    kind = "add" if amount > 0 else "redeem"
    plan = Plan(kind, "POST", f"/v1.0/points/{USER}/{kind}", "points", amount=amount)
    user = User(USER, "u", "p", "t")
    await writer.write_locked(None, user, retries=True, plan=plan)  # type: ignore[arg-type]
    return writer


async def test_a_retry_after_a_try_that_committed_unanswered_expects_one_change() -> None:
    for amount in (18, -18):
        # the first try commits and its instance dies before answering; the
        # retry is answered as its replay
        writer = await change(amount, [(True, 0), (True, 200)])
        assert writer.points == 100 + amount
        assert writer.history.fields[USER]["points"].last == writer.points


async def test_a_retry_after_a_try_that_did_not_commit_expects_its_own_change() -> None:
    writer = await change(18, [(False, 0), (False, 503), (True, 200)])
    assert writer.points == 118
    assert writer.history.fields[USER]["points"].last == 118


async def test_a_try_answered_at_once_is_not_retried() -> None:
    writer = await change(-18, [(True, 200)])
    assert writer.points == 82
    assert writer.history.fields[USER]["points"].last == 82
    assert writer.tries == []
