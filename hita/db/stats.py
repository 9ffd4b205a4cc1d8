"""Statistics, computed by PostgreSQL. The dashboard runs all of them; it is
the expensive read the cache exists for."""

from __future__ import annotations

from datetime import date

import asyncpg

from hita.db.database import Queryable


class StatsRepository:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def user_totals(self, new_within_days: int) -> asyncpg.Record:
        """Counts by state and role, recent sign-ups and the points held, in one scan."""
        row = await self._db.fetchrow(
            """
            SELECT count(*) AS total_users,
                   count(*) FILTER (WHERE is_active) AS active_users,
                   count(*) FILTER (WHERE role = 'user') AS role_user,
                   count(*) FILTER (WHERE role = 'admin') AS role_admin,
                   count(*) FILTER (WHERE role = 'superadmin') AS role_superadmin,
                   count(*) FILTER (WHERE created_at >= now() - make_interval(days => $1))
                       AS new_users,
                   COALESCE(sum(points), 0)::bigint AS total_points
            FROM users
            """,
            new_within_days,
        )
        assert row is not None  # an aggregate without GROUP BY returns one row
        return row

    async def points_flow(self, within_days: int) -> asyncpg.Record:
        """Points issued (added) and redeemed in the last ``within_days`` days."""
        row = await self._db.fetchrow(
            """
            SELECT COALESCE(sum(amount) FILTER (WHERE amount > 0), 0)::bigint AS issued,
                   COALESCE(-sum(amount) FILTER (WHERE amount < 0), 0)::bigint AS redeemed
            FROM points_transactions
            WHERE created_at >= now() - make_interval(days => $1)
            """,
            within_days,
        )
        assert row is not None  # an aggregate without GROUP BY returns one row
        return row

    async def top_users(self, limit: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._db.fetch(
            """
            SELECT id, username, full_name, points FROM users
            ORDER BY points DESC, id
            LIMIT $1
            """,
            limit,
        )
        return rows

    async def signups_per_day(self, days: int) -> list[tuple[date, int]]:
        """Every UTC day of the last ``days`` (today included), zero-filled, oldest first."""
        rows = await self._db.fetch(
            """
            WITH days AS (
                SELECT generate_series(
                    (now() AT TIME ZONE 'UTC')::date - ($1 - 1),
                    (now() AT TIME ZONE 'UTC')::date,
                    interval '1 day'
                )::date AS day
            ),
            signups AS (
                SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
                FROM users
                WHERE created_at >= ((now() AT TIME ZONE 'UTC')::date - ($1 - 1))
                                    AT TIME ZONE 'UTC'
                GROUP BY 1
            )
            SELECT days.day, COALESCE(signups.n, 0) AS n
            FROM days LEFT JOIN signups USING (day)
            ORDER BY days.day
            """,
            days,
        )
        return [(row["day"], row["n"]) for row in rows]
