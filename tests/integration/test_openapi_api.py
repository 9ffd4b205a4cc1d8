"""``GET /v1.0/openapi.json``, and real answers held to it.

schemathesis (test_schemathesis.py) sends only an admin's token and never
stops a dependency; the answers it cannot provoke are checked here: 401
without a token, 403 for a plain user, 413, 422, and 503 with Redis gone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from openapi_schema_validator import OAS30Validator

from hita.api.openapi import build_document
from hita.api.routes import ROUTES
from hita.appkeys import OPENAPI
from hita.domain.roles import Role
from hita.embedded import EmbeddedRedis
from tests.integration.conftest import PASSWORD, Account, World

NEW_USER = {
    "username": "new.one",
    "email": "new.one@hotel.example",
    "full_name": "New One",
    "password": PASSWORD,
}


def response_spec(document: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path}: {status} is not documented"
    spec: dict[str, Any] = responses[str(status)]
    if "$ref" in spec:
        spec = document["components"]["responses"][spec["$ref"].rsplit("/", 1)[-1]]
    return spec


async def assert_documented(
    document: dict[str, Any], method: str, path: str, response: ClientResponse
) -> None:
    """The answer's status, content type, required headers and body are as documented."""
    spec = response_spec(document, method, path, response.status)
    assert response.content_type in spec["content"], (method, path, response.content_type)
    for name, header in spec.get("headers", {}).items():
        assert not header.get("required") or name in response.headers, (method, path, name)
    schema = spec["content"][response.content_type]["schema"]
    body = await response.text()
    instance = orjson.loads(body) if response.content_type == "application/json" else body
    validator = OAS30Validator(
        {**schema, "components": document["components"]},
        format_checker=OAS30Validator.FORMAT_CHECKER,
    )
    errors = [error.message for error in validator.iter_errors(instance)]
    assert not errors, (method, path, response.status, errors)


async def test_the_document_is_served_to_anyone(world: World) -> None:
    response = await world.client.get("/v1.0/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.charset == "utf-8"
    document = await response.json()
    assert document == orjson.loads(orjson.dumps(build_document(ROUTES)))
    await assert_documented(document, "GET", "/v1.0/openapi.json", response)


@dataclass(frozen=True)
class Call:
    method: str
    template: str  # as in the document; {user_id} becomes ``target``
    caller: Account | None = None
    target: str = ""
    body: Any = None

    async def send(self, world: World) -> ClientResponse:
        headers = self.caller.headers if self.caller else {}
        path = self.template.format(user_id=self.target)
        return await world.client.request(self.method, path, json=self.body, headers=headers)


async def test_answers_schemathesis_does_not_provoke_match_the_document(world: World) -> None:
    document = orjson.loads(world.app[OPENAPI])
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    other = await world.make_user()
    login, create = "/v1.0/auth/login", "/v1.0/user/create"
    redeem = "/v1.0/points/{user_id}/redeem"
    calls = [
        Call("POST", login, body={"username": guest.username, "password": PASSWORD}),
        Call("POST", login, body={"username": guest.username, "password": "not the one"}),
        Call("GET", "/v1.0/user/list"),
        Call("GET", "/v1.0/user/list", guest),
        Call("GET", "/v1.0/user/{user_id}", guest, other.id),
        Call("GET", "/v1.0/user/{user_id}", guest, guest.id),
        Call("GET", "/v1.0/superadmin/users", admin),
        Call("POST", "/v1.0/points/{user_id}/add", admin, guest.id, {"amount": 5, "reason": "x"}),
        Call("POST", redeem, guest, guest.id, {"amount": 6, "reason": "spa"}),
        Call("POST", redeem, guest, guest.id, {"amount": 5, "reason": "spa"}),
        Call("GET", "/v1.0/points/{user_id}/history", guest, guest.id),
        Call("DELETE", "/v1.0/user/delete/{user_id}", admin, admin.id),
        Call("POST", create, admin, body={**NEW_USER, "username": guest.username}),
        Call("POST", create, admin, body={**NEW_USER, "role": "superadmin"}),
        Call("GET", "/v1.0/cache/stats", guest),
        Call("GET", "/metrics"),
    ]
    statuses = set()
    for call in calls:
        response = await call.send(world)
        statuses.add(response.status)
        await assert_documented(document, call.method, call.template, response)
    assert statuses == {200, 401, 403, 409, 422}

    for path in (login, create):
        response = await world.client.post(
            path,
            data=io.BytesIO(b"x" * (2 * 1024 * 1024)),
            headers={**admin.headers, "Content-Type": "application/json"},
        )
        assert response.status == 413
        await assert_documented(document, "POST", path, response)


@pytest.mark.slow
async def test_answers_without_redis_match_the_document(
    world_on_own_redis: World, own_redis: EmbeddedRedis
) -> None:
    world = world_on_own_redis
    document = orjson.loads(world.app[OPENAPI])
    admin = await world.make_user(Role.ADMIN)
    own_redis.stop()
    for method, template, path, status in [
        ("GET", "/v1.0/cache/health", "/v1.0/cache/health", 503),
        ("GET", "/v1.0/cache/stats", "/v1.0/cache/stats", 503),
        ("POST", "/v1.0/cache/clear/user/{user_id}", f"/v1.0/cache/clear/user/{admin.id}", 503),
        ("GET", "/v1.0/user/{user_id}", f"/v1.0/user/{admin.id}", 200),
        ("GET", "/v1.0/health", "/v1.0/health", 200),
        ("GET", "/v1.0/health/live", "/v1.0/health/live", 200),
    ]:
        response = await world.client.request(method, path, headers=admin.headers)
        assert response.status == status, path
        await assert_documented(document, method, template, response)
        if status == 503:
            assert (await response.json())["cache_available"] is False
