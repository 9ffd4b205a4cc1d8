"""``GET /v1.0/user/stats`` and ``GET /v1.0/dashboard/stats``: ``{success, stats}``."""

from __future__ import annotations

from aiohttp import web

from hita.api import answers
from hita.appkeys import USER_SERVICE


async def user_stats(request: web.Request) -> web.Response:
    """``stats``: total_users, active_users, inactive_users,
    users_by_role {user, admin, superadmin}, new_users_last_7_days,
    total_points, generated_at."""
    return (await request.app[USER_SERVICE].user_stats_view(answers.STATS)).response()


async def dashboard_stats(request: web.Request) -> web.Response:
    """``stats``: the user stats plus points_issued_last_30_days,
    points_redeemed_last_30_days, top_users [{id, username, full_name, points}]
    (10), signups_per_day [{date, count}] (30 days, oldest first), generated_at."""
    return (await request.app[USER_SERVICE].dashboard_stats_view(answers.STATS)).response()


def held_user_stats(request: web.Request) -> web.Response | None:
    found = request.app[USER_SERVICE].held_user_stats_view(answers.STATS)
    return answers.held(found)


def held_dashboard_stats(request: web.Request) -> web.Response | None:
    found = request.app[USER_SERVICE].held_dashboard_stats_view(answers.STATS)
    return answers.held(found)
