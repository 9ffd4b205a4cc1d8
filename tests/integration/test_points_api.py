"""Loyalty points: add, redeem, history; concurrent redeems never overdraw."""

from __future__ import annotations

import asyncio
from typing import Any

from hita.appkeys import DATABASE
from hita.domain.roles import Role
from tests.integration.conftest import Account, World, body_of


async def test_add_then_redeem_moves_the_balance_and_writes_the_ledger(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    response = await world.client.post(
        f"/v1.0/points/{guest.id}/add",
        json={"amount": 100, "reason": "stay"},
        headers=admin.headers,
    )
    body = await body_of(response)
    assert body["points"] == 100
    assert body["user_id"] == guest.id
    assert body["transaction"]["type"] == "add"
    assert body["transaction"]["balance_after"] == 100

    response = await world.client.post(
        f"/v1.0/points/{guest.id}/redeem",
        json={"amount": 30, "reason": "breakfast"},
        headers=guest.headers,
    )
    body = await body_of(response)
    assert body["points"] == 70
    assert body["transaction"]["type"] == "redeem"
    assert body["transaction"]["amount"] == 30

    response = await world.client.get(f"/v1.0/points/{guest.id}/history", headers=guest.headers)
    history = await body_of(response)
    assert [(t["type"], t["amount"], t["balance_after"]) for t in history["transactions"]] == [
        ("redeem", 30, 70),
        ("add", 100, 100),
    ]
    assert history["pagination"] == {"page": 1, "page_size": 20, "total": 2, "pages": 1}
    user = await body_of(await world.client.get(f"/v1.0/user/{guest.id}", headers=guest.headers))
    assert user["user"]["points"] == 70


async def test_an_overdraw_is_a_422_and_changes_nothing(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    await world.client.post(
        f"/v1.0/points/{guest.id}/add", json={"amount": 10, "reason": "stay"}, headers=admin.headers
    )
    response = await world.client.post(
        f"/v1.0/points/{guest.id}/redeem",
        json={"amount": 11, "reason": "spa"},
        headers=admin.headers,
    )
    assert response.status == 422
    assert await body_of(response) == {
        "success": False,
        "error": "Insufficient points to redeem 11",
    }
    history = await world.client.get(f"/v1.0/points/{guest.id}/history", headers=admin.headers)
    assert (await history.json())["pagination"]["total"] == 1


async def test_a_history_with_no_rows_or_past_its_last_page_still_counts(world: World) -> None:
    """One statement reads the count and the page: a user with no ledger row,
    and a page past the last, answer an empty page with the right total."""
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()

    async def history(query: str) -> Any:
        path = f"/v1.0/points/{guest.id}/history{query}"
        return await body_of(await world.client.get(path, headers=admin.headers))

    empty = await history("")
    assert empty["transactions"] == []
    assert empty["pagination"] == {"page": 1, "page_size": 20, "total": 0, "pages": 0}
    for amount in (1, 2, 3):
        await world.client.post(
            f"/v1.0/points/{guest.id}/add",
            json={"amount": amount, "reason": "stay"},
            headers=admin.headers,
        )
    second = await history("?page=2&page_size=2")
    assert [t["amount"] for t in second["transactions"]] == [1]
    assert second["pagination"]["total"] == 3
    past = await history("?page=9&page_size=2")
    assert past["transactions"] == []
    assert past["pagination"]["total"] == 3


async def test_unknown_users_and_bad_amounts(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    for method, path in [
        ("POST", "/v1.0/points/1000000000/add"),
        ("POST", "/v1.0/points/1000000000/redeem"),
        ("GET", "/v1.0/points/1000000000/history"),
    ]:
        response = await world.client.request(
            method, path, json={"amount": 1, "reason": "x"}, headers=admin.headers
        )
        assert response.status == 404, path
    response = await world.client.post(
        f"/v1.0/points/{admin.id}/add", json={"amount": -5, "reason": ""}, headers=admin.headers
    )
    assert response.status == 400
    assert set((await body_of(response))["details"]) == {"amount", "reason"}


async def fifty_redeems_of_10_on_100(world: World) -> tuple[Account, list[int]]:
    """A guest credited 100 points redeems 10, fifty times at once: the
    guest, and the statuses of the fifty answers."""
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    await world.client.post(
        f"/v1.0/points/{guest.id}/add",
        json={"amount": 100, "reason": "stay"},
        headers=admin.headers,
    )

    async def redeem() -> int:
        response = await world.client.post(
            f"/v1.0/points/{guest.id}/redeem",
            json={"amount": 10, "reason": "rush"},
            headers=guest.headers,
        )
        await response.read()
        return response.status

    return guest, list(await asyncio.gather(*(redeem() for _ in range(50))))


async def test_50_concurrent_redeems_of_10_on_100_leave_exactly_0(world: World) -> None:
    guest, statuses = await fifty_redeems_of_10_on_100(world)

    assert sorted(statuses) == [200] * 10 + [422] * 40
    database = world.app[DATABASE]
    assert await database.fetchval("SELECT points FROM users WHERE id = $1", guest.id) == 0
    redeems = await database.fetch(
        "SELECT amount, balance_after FROM points_transactions"
        " WHERE user_id = $1 AND amount < 0 ORDER BY id",
        guest.id,
    )
    assert [r["amount"] for r in redeems] == [-10] * 10
    assert [r["balance_after"] for r in redeems] == list(range(90, -1, -10))
