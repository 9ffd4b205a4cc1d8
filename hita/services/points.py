"""``PointsService``: the loyalty points balance and its ledger."""

from __future__ import annotations

from asyncpg import Connection

from hita.db.database import Database
from hita.db.points import PointsRepository
from hita.db.users import UsersRepository
from hita.domain.points import PointsEntry
from hita.domain.typedefs import JsonDict
from hita.domain.users import Principal, pagination
from hita.errors import InsufficientPoints, UserNotFound
from hita.services.targets import check_may_change
from hita.services.turns import Turns


def _result(entry: PointsEntry) -> JsonDict:
    return {
        "user_id": entry.user_id,
        "points": entry.balance_after,
        "transaction": entry.to_json(),
    }


class PointsService:
    def __init__(self, database: Database, turns: Turns) -> None:
        self._db = database
        self._turns = turns  # one user's changes take turns before they take a connection

    async def add(self, actor: Principal, user_id: str, amount: int, reason: str) -> JsonDict:
        """``{"user_id", "points": new balance, "transaction": {...}}``."""

        async def credit(conn: Connection) -> JsonDict:
            await check_may_change(conn, actor, user_id)
            points = PointsRepository(conn)
            balance = await points.credit(user_id, amount)
            if balance is None:
                raise UserNotFound()
            return _result(await points.record(user_id, amount, reason, balance))

        async with self._turns.of(user_id):  # one user's changes take turns
            return await self._db.atomic(credit)

    async def redeem(self, actor: Principal, user_id: str, amount: int, reason: str) -> JsonDict:
        """Like ``add``; a redeem above the balance changes nothing and is a 422.
        The conditional UPDATE and its ledger row commit together or not at all."""

        async def debit(conn: Connection) -> JsonDict:
            await check_may_change(conn, actor, user_id)
            points = PointsRepository(conn)
            balance = await points.debit(user_id, amount)
            if balance is None:
                raise InsufficientPoints(f"Insufficient points to redeem {amount}")
            return _result(await points.record(user_id, -amount, reason, balance))

        async with self._turns.of(user_id):  # one user's changes take turns
            return await self._db.atomic(debit)

    async def history(self, user_id: str, page: int, page_size: int) -> JsonDict:
        """``{"user_id", "transactions": [...], "pagination": {...}}``, newest first."""

        async def read(conn: Connection) -> tuple[int, list[PointsEntry]]:
            if not await UsersRepository(conn).exists(user_id):
                raise UserNotFound()
            points = PointsRepository(conn)
            total = await points.count(user_id)
            return total, await points.history(user_id, page_size, (page - 1) * page_size)

        total, entries = await self._db.atomic(read, isolation="repeatable_read", readonly=True)
        return {
            "user_id": user_id,
            "transactions": [e.to_json() for e in entries],
            "pagination": pagination(page, page_size, total),
        }
