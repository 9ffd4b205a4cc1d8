"""Bad tokens on the admin routes: each a JSON 401 with ``WWW-Authenticate:
Bearer``, never a 500, and never with the handler running. Also the requests
that must never reach an admin handler unauthenticated (OPTIONS, path
variants). There is no cache route yet: the admin user routes stand in for
``/v1.0/cache/clear`` here; the cache issue adds its routes to these tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from multidict import CIMultiDict

from hita.constants import MAX_TOKEN_BYTES
from hita.domain.roles import Role
from hita.services.cached_users import CachedUserService
from tests.integration.conftest import Account, World

ADMIN_ROUTES = [
    ("GET", "/v1.0/user/list"),
    ("GET", "/v1.0/user/stats"),
    ("GET", "/v1.0/dashboard/stats"),
    ("POST", "/v1.0/user/create"),
]
OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256"


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(admin: Account, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": admin.id, "role": "admin", "iat": now, "exp": now + 600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


Signer = Callable[[dict[str, Any]], str]
CASE_NAMES = [
    "no header",
    "empty header",
    "wrong scheme",
    "token scheme",
    "scheme only",
    "three parts",
    "two headers",
    "malformed",
    "malformed segments",
    "non-ascii",
    "alg none",
    "alg none signed",
    "other algorithm",
    "RS256 header, HMAC signature",
    "other key",
    "bad signature",
    "expired",
    "not yet valid",
    "missing exp",
    "missing iat",
    "missing sub",
    "malformed sub",
    "missing role",
    "unknown role",
    "role not the user's",
    "unknown user",
    "over 8 KB",
]


def hmac_signed(secret: str, header: dict[str, Any], payload: str) -> str:
    """A token whose header claims ``header`` but is signed HS256 with ``secret``
    (the key-confusion attack on services that trust the token's ``alg``)."""
    signing_input = f"{b64(header)}.{payload}"
    digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def bad_headers(admin: Account, sign: Signer, secret: str) -> dict[str, Mapping[str, str]]:
    good = admin.token
    head, payload, signature = good.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    big = sign(claims(admin, padding="x" * (MAX_TOKEN_BYTES + 1)))
    return {
        "no header": {},
        "empty header": {"Authorization": ""},
        "wrong scheme": {"Authorization": f"Basic {good}"},
        "token scheme": {"Authorization": f"Token {good}"},
        "scheme only": {"Authorization": "Bearer"},
        "three parts": {"Authorization": f"Bearer {good} extra"},
        "two headers": CIMultiDict([("Authorization", f"Bearer {good}")] * 2),
        "malformed": {"Authorization": "Bearer not-a-jwt"},
        "malformed segments": {"Authorization": "Bearer a.b.c"},
        "non-ascii": {"Authorization": "Bearer ey\u00e9.a.b"},
        "alg none": {"Authorization": f"Bearer {b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."},
        "alg none signed": {
            "Authorization": f"Bearer {b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}"
        },
        "other algorithm": {
            "Authorization": "Bearer "
            + jwt.encode(claims(admin), OTHER_SECRET.ljust(64, "x"), algorithm="HS512")
        },
        "RS256 header, HMAC signature": {
            "Authorization": "Bearer " + hmac_signed(secret, {"alg": "RS256"}, payload)
        },
        "other key": {
            "Authorization": "Bearer " + jwt.encode(claims(admin), OTHER_SECRET, algorithm="HS256")
        },
        "bad signature": {"Authorization": f"Bearer {head}.{payload}.{flipped}"},
        "expired": {"Authorization": "Bearer " + sign(claims(admin, exp=int(time.time()) - 5))},
        "not yet valid": {
            "Authorization": "Bearer " + sign(claims(admin, iat=int(time.time()) + 3600))
        },
        "missing exp": {"Authorization": "Bearer " + sign(claims(admin, exp=None))},
        "missing iat": {"Authorization": "Bearer " + sign(claims(admin, iat=None))},
        "missing sub": {"Authorization": "Bearer " + sign(claims(admin, sub=None))},
        "malformed sub": {"Authorization": "Bearer " + sign(claims(admin, sub="12*"))},
        "missing role": {"Authorization": "Bearer " + sign(claims(admin, role=None))},
        "unknown role": {"Authorization": "Bearer " + sign(claims(admin, role="root"))},
        "role not the user's": {
            "Authorization": "Bearer " + sign(claims(admin, role="superadmin"))
        },
        "unknown user": {"Authorization": "Bearer " + sign(claims(admin, sub="1000000000"))},
        "over 8 KB": {"Authorization": f"Bearer {big}"},
    }


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every call to the services the admin routes' handlers call, each
    the first thing its handler does after reading the request."""
    seen: list[str] = []
    for name in ("list_view", "user_stats_view", "dashboard_stats_view", "create_user"):
        original = getattr(CachedUserService, name)

        async def spy(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            seen.append(_name)
            return await _original(*args, **kw)

        monkeypatch.setattr(CachedUserService, name, spy)
    return seen


async def assert_json_401(response: ClientResponse) -> None:
    assert response.status == 401, await response.text()
    assert response.content_type == "application/json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = await response.json()
    assert body["success"] is False
    assert body["error"]


async def assert_refused_everywhere(world: World, headers: Mapping[str, str]) -> None:
    for method, path in ADMIN_ROUTES:
        await assert_json_401(await world.client.request(method, path, headers=headers, json={}))


@pytest.mark.parametrize("case", CASE_NAMES)
async def test_a_bad_token_is_a_json_401_before_any_handler(
    world: World, calls: list[str], case: str
) -> None:
    admin = await world.make_user(Role.ADMIN)
    calls.clear()
    await assert_refused_everywhere(
        world, bad_headers(admin, world.sign, world.config.auth.jwt_secret)[case]
    )
    assert calls == []
    response = await world.client.get("/v1.0/user/list", headers=admin.headers)
    assert response.status == 200
    assert calls == ["list_view"]


async def test_the_token_of_a_deleted_user_stops_working_at_once(
    world: World, calls: list[str]
) -> None:
    boss = await world.make_user(Role.SUPERADMIN)
    admin = await world.make_user(Role.ADMIN)
    assert (await world.client.get("/v1.0/user/stats", headers=admin.headers)).status == 200
    response = await world.client.delete(f"/v1.0/user/delete/{admin.id}", headers=boss.headers)
    assert response.status == 200
    calls.clear()
    await assert_refused_everywhere(world, admin.headers)
    assert calls == []


async def test_the_token_of_a_deactivated_user_stops_working_at_once(
    world: World, calls: list[str]
) -> None:
    boss = await world.make_user(Role.SUPERADMIN)
    admin = await world.make_user(Role.ADMIN)
    response = await world.client.post(f"/v1.0/user/{admin.id}/deactivate", headers=boss.headers)
    assert response.status == 200
    calls.clear()
    await assert_refused_everywhere(world, admin.headers)
    assert calls == []
    await world.client.post(f"/v1.0/user/{admin.id}/activate", headers=boss.headers)
    assert (await world.client.get("/v1.0/user/stats", headers=admin.headers)).status == 200


async def test_a_demoted_admin_token_stops_working(world: World, calls: list[str]) -> None:
    boss = await world.make_user(Role.SUPERADMIN)
    admin = await world.make_user(Role.ADMIN)
    response = await world.client.patch(
        f"/v1.0/user/update/{admin.id}", json={"role": "user"}, headers=boss.headers
    )
    assert response.status == 200
    calls.clear()
    await assert_refused_everywhere(world, admin.headers)
    assert calls == []


async def raw_request(world: World, method: str, target: str, headers: str = "") -> int:
    """Send the request line exactly as written (clients would normalise it).
    aiohttp does not resolve dot segments: such paths match no route."""
    reader, writer = await asyncio.open_connection(world.client.host, world.client.port)
    try:
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await reader.readline()
        rest = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    assert b"application/json" in rest
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("OPTIONS", "/v1.0/user/list", 405),
        ("OPTIONS", "/v1.0/user/stats", 405),
        ("OPTIONS", "*", 404),
        ("GET", "//v1.0/cache/clear", 404),
        ("POST", "//v1.0/cache/clear", 404),
        ("GET", "//v1.0/user/list", 404),
        ("GET", "/v1.0/user/list/", 404),
        ("GET", "/v1.0/user/stats/", 404),
        ("GET", "/v1.0/user/%6Cist", 401),
        ("GET", "/v1.0/user/%6c%69%73%74", 401),
        ("GET", "/v1.0/user%2Flist", 404),
        ("GET", "/v1.0/USER/LIST", 404),
        ("GET", "/V1.0/user/stats", 404),
        ("GET", "/v1.0/health/../user/list", 404),
        ("GET", "/v1.0/health%2F..%2Fuser%2Flist", 404),
        ("GET", "/v1.0/auth/login/../../v1.0/user/stats", 404),
        ("GET", "/v1.0/user/list?/v1.0/health", 401),
        ("GET", "/v1.0/user/list#/v1.0/health", 401),
        ("GET", "/v1.0/health/x/../../user/list", 404),
        ("HEAD", "/v1.0/user/list", 401),
    ],
)
async def test_path_variants_never_reach_an_admin_handler_unauthenticated(
    world: World, calls: list[str], method: str, target: str, status: int
) -> None:
    assert await raw_request(world, method, target) == status
    assert calls == []


async def test_a_token_signed_with_the_once_published_development_secret_is_refused(
    world: World,
) -> None:
    """Before issue 11 every checkout signed with this string from the source."""
    boss = await world.make_user(Role.SUPERADMIN)
    now = int(time.time())
    forged = jwt.encode(
        {"sub": boss.id, "role": "superadmin", "iat": now, "exp": now + 600},
        "hita-development-secret-do-not-use-in-production",
        algorithm="HS256",
    )
    response = await world.client.get(
        "/v1.0/superadmin/users", headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status == 401
    assert (await response.json())["success"] is False
    assert (await world.client.get("/v1.0/superadmin/users", headers=boss.headers)).status == 200
