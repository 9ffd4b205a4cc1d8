"""``Idempotency-Key`` on points changes: a client that retries a change it got
no answer for (its instance died after the commit, the connection broke) changes
the balance once, whichever instance the retry reaches, however many race."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from hita.api import schemas
from hita.appkeys import DATABASE
from hita.domain.roles import Role
from tests.integration.conftest import Account, World, body_of
from tests.integration.test_coherence import two_worlds

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


async def change(
    world: World, admin: Account, guest: Account, key: str | None, kind: str = "add", **body: Any
) -> tuple[int, dict[str, Any], str | None]:
    headers = dict(admin.headers)
    if key is not None:
        headers[KEY] = key
    response = await world.client.post(
        f"/v1.0/points/{guest.id}/{kind}",
        json={"amount": 10, "reason": "late checkout", **body},
        headers=headers,
    )
    return response.status, await response.json(), response.headers.get(REPLAYED)


async def ledger(world: World, guest: Account) -> list[tuple[int, str]]:
    rows = await world.app[DATABASE].fetch(
        "SELECT amount, reason FROM points_transactions WHERE user_id = $1 ORDER BY id", guest.id
    )
    return [(r["amount"], r["reason"]) for r in rows]


async def test_a_retry_with_the_same_key_is_answered_again_and_changes_nothing(
    world: World,
) -> None:
    admin, guest = await world.make_user(Role.ADMIN), await world.make_user()
    key = str(uuid.uuid4())
    first = await change(world, admin, guest, key)
    again = await change(world, admin, guest, f'"{key}"')  # the draft's quoted form
    assert first[0] == again[0] == 200
    assert again[1] == first[1]  # the same answer, the same transaction id
    assert (first[2], again[2]) == (None, "true")
    assert await ledger(world, guest) == [(10, "late checkout")]
    user = await body_of(await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers))
    assert user["user"]["points"] == 10


async def test_a_redeem_retried_is_made_once_and_other_keys_are_other_changes(
    world: World,
) -> None:
    admin, guest = await world.make_user(Role.ADMIN), await world.make_user()
    await change(world, admin, guest, "stay-1", amount=100)
    redeem = [await change(world, admin, guest, "spa-1", "redeem", amount=30) for _ in range(3)]
    assert [(status, replayed) for status, _, replayed in redeem] == [
        (200, None),
        (200, "true"),
        (200, "true"),
    ]
    assert {body["points"] for _, body, _ in redeem} == {70}
    second = await change(world, admin, guest, "spa-2", "redeem", amount=30)
    assert (second[0], second[1]["points"], second[2]) == (200, 40, None)
    assert await ledger(world, guest) == [(100, "late checkout")] + [(-30, "late checkout")] * 2


async def test_a_key_used_for_another_change_is_a_422_and_changes_nothing(world: World) -> None:
    admin, guest = await world.make_user(Role.ADMIN), await world.make_user()
    await change(world, admin, guest, "k-1")
    for kind, body in (("add", {"amount": 11}), ("add", {"reason": "spa"}), ("redeem", {})):
        status, answer, _ = await change(world, admin, guest, "k-1", kind, **body)
        assert status == 422, (kind, body)
        assert answer["success"] is False
        assert KEY in answer["error"]
    assert await ledger(world, guest) == [(10, "late checkout")]


async def test_keys_are_per_user(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    one, two = await world.make_user(), await world.make_user()
    assert (await change(world, admin, one, "same"))[2] is None
    assert (await change(world, admin, two, "same"))[2] is None
    assert await ledger(world, one) == await ledger(world, two) == [(10, "late checkout")]


@pytest.mark.parametrize(
    "value",
    ["", " ", "a b", "x" * 129, "é", '"unclosed', '""', "k,k", "a\tb"],
)
async def test_a_malformed_key_is_a_400_and_changes_nothing(world: World, value: str) -> None:
    admin, guest = await world.make_user(Role.ADMIN), await world.make_user()
    status, answer, _ = await change(world, admin, guest, value)
    assert status == 400, value
    assert KEY in answer["details"]
    assert await ledger(world, guest) == []


async def test_a_key_given_twice_is_a_400(world: World) -> None:
    admin, guest = await world.make_user(Role.ADMIN), await world.make_user()
    response = await world.client.post(
        f"/v1.0/points/{guest.id}/add",
        json={"amount": 10, "reason": "x"},
        headers=[*admin.headers.items(), (KEY, "a"), (KEY, "b")],
    )
    assert response.status == 400
    assert await ledger(world, guest) == []


async def racing_retries(a: World, b: World, key: str | None) -> tuple[list[int], int]:
    """Ten tries of one change at once, half on each instance: statuses, and
    the ledger rows left."""
    admin, guest = await a.make_user(Role.ADMIN), await a.make_user()
    tries = [change(world, admin, guest, key) for world in (a, b) * 5]
    statuses = [status for status, _, _ in await asyncio.gather(*tries)]
    return statuses, len(await ledger(a, guest))


async def test_racing_retries_on_two_instances_make_one_change(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    a, b = await two_worlds(aiohttp_client, clean_database, clean_redis)
    statuses, rows = await racing_retries(a, b, "race-1")
    assert statuses == [200] * 10
    assert rows == 1


async def test_control_retries_without_the_key_change_the_balance_each_time(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    clean_redis: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect back: the handler ignores the key, as before it existed."""
    monkeypatch.setattr(schemas, "idempotency_key", lambda request: None)
    a, b = await two_worlds(aiohttp_client, clean_database, clean_redis)
    statuses, rows = await racing_retries(a, b, "race-1")
    assert statuses == [200] * 10
    assert rows == 10
