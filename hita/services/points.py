"""``PointsService``: the loyalty points balance and its ledger."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asyncpg import Connection

from hita.db.database import Database
from hita.db.points import PointsRepository
from hita.domain.points import PointsEntry
from hita.domain.typedefs import JsonDict
from hita.domain.users import Principal, pagination
from hita.errors import HitaError, IdempotencyKeyReused, InsufficientPoints, UserNotFound
from hita.services.targets import check_may_change
from hita.services.turns import Turns


def _result(entry: PointsEntry) -> JsonDict:
    return {
        "user_id": entry.user_id,
        "points": entry.balance_after,
        "transaction": entry.to_json(),
    }


@dataclass(frozen=True, slots=True)
class PointsChange:
    """What a change answers; ``replayed``: its Idempotency-Key had been used
    for this very change already, which is answered again and not made twice."""

    result: JsonDict
    replayed: bool = False


Apply = Callable[[PointsRepository], Awaitable[int | None]]


class PointsService:
    def __init__(self, database: Database, turns: Turns) -> None:
        self._db = database
        self._turns = turns  # one user's changes take turns before they take a connection

    async def add(
        self,
        actor: Principal,
        user_id: str,
        amount: int,
        reason: str,
        idempotency_key: str | None = None,
    ) -> PointsChange:
        """``{"user_id", "points": new balance, "transaction": {...}}``."""
        return await self._change(
            actor,
            user_id,
            signed=amount,
            reason=reason,
            key=idempotency_key,
            apply=lambda points: points.credit(user_id, amount),
            refused=UserNotFound(),
        )

    async def redeem(
        self,
        actor: Principal,
        user_id: str,
        amount: int,
        reason: str,
        idempotency_key: str | None = None,
    ) -> PointsChange:
        """Like ``add``; a redeem above the balance changes nothing and is a 422.
        The conditional UPDATE and its ledger row commit together or not at all."""
        return await self._change(
            actor,
            user_id,
            signed=-amount,
            reason=reason,
            key=idempotency_key,
            apply=lambda points: points.debit(user_id, amount),
            refused=InsufficientPoints(f"Insufficient points to redeem {amount}"),
        )

    async def _change(
        self,
        actor: Principal,
        user_id: str,
        *,
        signed: int,
        reason: str,
        key: str | None,
        apply: Apply,
        refused: HitaError,
    ) -> PointsChange:
        """One change of the balance and its ledger row, in one transaction. With
        a key, the user's row is locked first, so a change with the same key
        (a retry, on any instance) waits for this one and then finds its row:
        the same change is answered again, another one with that key is a 422."""

        async def change(conn: Connection) -> PointsChange:
            await check_may_change(conn, actor, user_id)
            points = PointsRepository(conn)
            if key is not None:
                await points.lock_user(user_id)
                earlier = await points.by_idempotency_key(user_id, key)
                if earlier is not None:
                    if (earlier.amount, earlier.reason) != (signed, reason):
                        raise IdempotencyKeyReused()
                    return PointsChange(_result(earlier), replayed=True)
            balance = await apply(points)
            if balance is None:
                raise refused
            return PointsChange(_result(await points.record(user_id, signed, reason, balance, key)))

        async with self._turns.of(user_id):  # one user's changes take turns
            return await self._db.atomic(change)

    async def history(self, user_id: str, page: int, page_size: int) -> JsonDict:
        """``{"user_id", "transactions": [...], "pagination": {...}}``, newest first."""
        found = await PointsRepository(self._db).history(user_id, page_size, (page - 1) * page_size)
        if found is None:
            raise UserNotFound()
        total, entries = found
        return {
            "user_id": user_id,
            "transactions": [e.to_json() for e in entries],
            "pagination": pagination(page, page_size, total),
        }
