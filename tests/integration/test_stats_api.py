"""User and dashboard statistics, computed by PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hita.appkeys import DATABASE
from hita.domain.roles import Role
from tests.integration.conftest import World, body_of


async def test_user_and_dashboard_stats_count_what_is_there(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    await world.make_user(Role.SUPERADMIN)
    rich = await world.make_user(full_name="Rich Guest")
    old = await world.make_user(is_active=False)
    database = world.app[DATABASE]
    await database.execute(
        "UPDATE users SET created_at = now() - interval '40 days' WHERE id = $1", old.id
    )
    for path, body in [
        (f"/v1.0/points/{rich.id}/add", {"amount": 500, "reason": "stay"}),
        (f"/v1.0/points/{rich.id}/redeem", {"amount": 120, "reason": "spa"}),
        (f"/v1.0/points/{old.id}/add", {"amount": 7, "reason": "stay"}),
    ]:
        assert (await world.client.post(path, json=body, headers=admin.headers)).status == 200
    await database.execute(
        "UPDATE points_transactions SET created_at = now() - interval '31 days' WHERE user_id = $1",
        old.id,
    )

    response = await world.client.get("/v1.0/user/stats", headers=admin.headers)
    stats = (await body_of(response))["stats"]
    expected_totals = {
        "total_users": 4,
        "active_users": 3,
        "inactive_users": 1,
        "users_by_role": {"user": 2, "admin": 1, "superadmin": 1},
        "new_users_last_7_days": 3,
        "total_points": 387,
    }
    assert {k: stats[k] for k in expected_totals} == expected_totals
    assert stats["generated_at"].endswith("Z")

    response = await world.client.get("/v1.0/dashboard/stats", headers=admin.headers)
    dash = (await body_of(response))["stats"]
    assert {k: dash[k] for k in expected_totals} == expected_totals
    assert dash["points_issued_last_30_days"] == 500
    assert dash["points_redeemed_last_30_days"] == 120
    assert dash["top_users"][0] == {
        "id": rich.id,
        "username": rich.username,
        "full_name": "Rich Guest",
        "points": 380,
    }
    assert len(dash["top_users"]) == 4
    days = dash["signups_per_day"]
    today = datetime.now(UTC).date()
    assert [d["date"] for d in days] == [
        (today - timedelta(days=n)).isoformat() for n in range(29, -1, -1)
    ]
    assert days[-1]["count"] == 3
    assert sum(d["count"] for d in days) == 3


async def test_stats_of_an_empty_service_are_zeros(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    await world.app[DATABASE].execute("DELETE FROM users WHERE id <> $1", admin.id)
    response = await world.client.get("/v1.0/dashboard/stats", headers=admin.headers)
    dash = (await body_of(response))["stats"]
    assert dash["total_points"] == 0
    assert dash["points_issued_last_30_days"] == 0
    assert len(dash["signups_per_day"]) == 30
