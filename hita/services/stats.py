"""User and dashboard statistics as JSON-ready dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from hita.db.database import Database, Queryable
from hita.db.stats import StatsRepository
from hita.domain.timefmt import iso_utc
from hita.domain.typedefs import JsonDict

NEW_USERS_WINDOW_DAYS: Final = 7
POINTS_WINDOW_DAYS: Final = 30
SIGNUPS_WINDOW_DAYS: Final = 30
TOP_USERS: Final = 10


def _now() -> str:
    return iso_utc(datetime.now(UTC))


def _totals_json(row: asyncpg.Record) -> JsonDict:
    return {
        "total_users": row["total_users"],
        "active_users": row["active_users"],
        "inactive_users": row["total_users"] - row["active_users"],
        "users_by_role": {
            "user": row["role_user"],
            "admin": row["role_admin"],
            "superadmin": row["role_superadmin"],
        },
        "new_users_last_7_days": row["new_users"],
        "total_points": row["total_points"],
    }


async def user_stats(db: Queryable) -> JsonDict:
    totals = await StatsRepository(db).user_totals(NEW_USERS_WINDOW_DAYS)
    return {**_totals_json(totals), "generated_at": _now()}


async def dashboard_stats(database: Database) -> JsonDict:
    """Every figure from one snapshot (repeatable read), so they agree."""

    async def read(conn: asyncpg.Connection) -> tuple[Any, Any, Any, Any]:
        repo = StatsRepository(conn)
        return (
            await repo.user_totals(NEW_USERS_WINDOW_DAYS),
            await repo.points_flow(POINTS_WINDOW_DAYS),
            await repo.top_users(TOP_USERS),
            await repo.signups_per_day(SIGNUPS_WINDOW_DAYS),
        )

    totals, flow, top, signups = await database.atomic(
        read, isolation="repeatable_read", readonly=True
    )
    return {
        **_totals_json(totals),
        "points_issued_last_30_days": flow["issued"],
        "points_redeemed_last_30_days": flow["redeemed"],
        "top_users": [
            {
                "id": r["id"],
                "username": r["username"],
                "full_name": r["full_name"],
                "points": r["points"],
            }
            for r in top
        ],
        "signups_per_day": [{"date": day.isoformat(), "count": n} for day, n in signups],
        "generated_at": _now(),
    }
