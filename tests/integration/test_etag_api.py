"""ETags on the cached reads: present, 304 on a match, changed by a write, and
an If-None-Match that is not a list of tags is ignored, never a 500."""

from __future__ import annotations

import re

import pytest

from hita.constants import MAX_IF_NONE_MATCH_BYTES
from hita.domain.roles import Role
from tests.integration.conftest import Account, World, body_of

ETAG_RE = re.compile(r'"[0-9a-f]{32}"')


def cached_reads(user: Account) -> list[str]:
    return [
        f"/v1.0/user/{user.id}",
        "/v1.0/user/list?page=1",
        "/v1.0/user/stats",
        "/v1.0/dashboard/stats",
        "/v1.0/superadmin/users?page=1",
    ]


async def etag_of(world: World, path: str, caller: Account) -> str:
    response = await world.client.get(path, headers=caller.headers)
    assert response.status == 200
    await body_of(response)
    etag = response.headers["ETag"]
    assert ETAG_RE.fullmatch(etag)
    return etag


async def test_every_cached_read_has_an_etag_and_answers_304_on_a_match(world: World) -> None:
    boss = await world.make_user(Role.SUPERADMIN)
    guest = await world.make_user()
    for path in cached_reads(guest):
        etag = await etag_of(world, path, boss)
        assert await etag_of(world, path, boss) == etag  # the same answer, the same tag
        for header in (etag, f"W/{etag}", f'"0000", {etag}', "*"):
            response = await world.client.get(
                path, headers={**boss.headers, "If-None-Match": header}
            )
            assert response.status == 304, (path, header)
            assert await response.read() == b""
            assert response.headers["ETag"] == etag
        response = await world.client.get(
            path, headers={**boss.headers, "If-None-Match": '"' + "0" * 32 + '"'}
        )
        assert response.status == 200
        assert response.headers["ETag"] == etag
        assert (await body_of(response))["success"] is True


async def test_a_write_changes_the_etag(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    before = {path: await etag_of(world, path, admin) for path in cached_reads(guest)[:4]}

    response = await world.client.patch(
        f"/v1.0/user/update/{guest.id}", json={"full_name": "Renamed Guest"}, headers=admin.headers
    )
    assert response.status == 200
    await world.make_user()  # the list and both statistics change too

    for path, old in before.items():
        response = await world.client.get(path, headers={**admin.headers, "If-None-Match": old})
        assert response.status == 200, path
        assert response.headers["ETag"] != old
        assert (await body_of(response))["success"] is True
    response = await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)
    assert (await response.json())["user"]["full_name"] == "Renamed Guest"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        '"unterminated',
        'W/ "a"',
        '"a" "b"',
        "W/",
        ",,,",
        '"é"',
        '"' + "a" * (MAX_IF_NONE_MATCH_BYTES + 1) + '"',
        ", ".join(['"x"'] * 400),
    ],
)
async def test_a_malformed_or_over_long_if_none_match_is_ignored(world: World, header: str) -> None:
    admin = await world.make_user(Role.ADMIN)
    etag = await etag_of(world, f"/v1.0/user/{admin.id}", admin)
    response = await world.client.get(
        f"/v1.0/user/{admin.id}", headers={**admin.headers, "If-None-Match": header}
    )
    assert response.status == 200
    assert response.headers["ETag"] == etag
    assert (await body_of(response))["user"]["id"] == admin.id


async def test_an_over_long_list_holding_the_tag_is_still_ignored(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    etag = await etag_of(world, f"/v1.0/user/{admin.id}", admin)
    header = ", ".join([*(['"x"'] * 40), etag])
    response = await world.client.get(
        f"/v1.0/user/{admin.id}", headers={**admin.headers, "If-None-Match": header}
    )
    assert response.status == 200


async def test_errors_and_uncached_reads_carry_no_etag(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    missing = await world.client.get("/v1.0/user/1000000000", headers=admin.headers)
    assert missing.status == 404
    assert "ETag" not in missing.headers
    denied = await world.client.get(f"/v1.0/user/{admin.id}", headers=guest.headers)
    assert denied.status == 403
    assert "ETag" not in denied.headers
    history = await world.client.get(f"/v1.0/points/{guest.id}/history", headers=admin.headers)
    assert history.status == 200
    assert "ETag" not in history.headers
    # a 304 needs the caller to be allowed the answer: no token, no 304
    etag = await etag_of(world, f"/v1.0/user/{guest.id}", admin)
    response = await world.client.get(f"/v1.0/user/{guest.id}", headers={"If-None-Match": etag})
    assert response.status == 401
