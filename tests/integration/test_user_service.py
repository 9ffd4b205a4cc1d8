"""What the cache layer will rely on: reads are JSON-ready and round-trip exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hita.appkeys import USER_SERVICE
from hita.config import Config
from hita.domain.roles import Role
from hita.domain.users import UserListQuery
from tests.integration.conftest import World, assert_no_secrets


@pytest.fixture
def config(topology_config: Config) -> Config:
    return topology_config


async def test_every_read_round_trips_through_json_unchanged(world: World) -> None:
    guest = await world.make_user()
    await world.make_user(Role.SUPERADMIN)
    service = world.app[USER_SERVICE]
    reads: list[Any] = [
        await service.get_user(guest.id),
        await service.list_users(UserListQuery(search="guest")),
        await service.superadmin_list(1, 10),
        await service.user_stats(),
        await service.dashboard_stats(),
    ]
    for result in reads:
        text = json.dumps(result)
        assert json.loads(text) == result
        assert_no_secrets(text)
    user = reads[0]
    assert user["created_at"].endswith("Z")
    assert user["last_login_at"] is None
    assert await service.get_user("1000000000") is None
    assert await service.get_user(guest.id) == user  # now from the cache, the same
