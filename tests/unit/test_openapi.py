"""The OpenAPI document: valid, and exactly the router's routes, with their access."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from hita.api import openapi
from hita.api.auth import is_public
from hita.app import create_app
from hita.appkeys import OPENAPI
from tests.conftest import make_config

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def app() -> web.Application:
    return create_app(make_config())


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(app[OPENAPI])
    return result


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def path_of(route: web.AbstractRoute) -> str:
    assert route.resource is not None
    return route.resource.canonical


def test_the_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")


def test_it_lists_every_route_of_the_router_and_nothing_else(
    app: web.Application, document: dict[str, Any]
) -> None:
    routes = {(route.method, path_of(route)) for route in app.router.routes()}
    assert len(routes) > 20
    assert set(operations(document)) == routes
    assert ("GET", "/v1.0/openapi.json") in routes


def test_a_route_without_an_entry_stops_the_build() -> None:
    async def undocumented(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/v1.0/somewhere", undocumented, allow_head=False)
    with pytest.raises(openapi.UndocumentedRoute, match=r"GET /v1\.0/somewhere"):
        openapi.build_document(app.router)


def test_a_path_parameter_without_a_definition_stops_the_build() -> None:
    app = web.Application()
    app.router.add_get("/v1.0/user/{guest}", openapi.openapi_document, allow_head=False)
    with pytest.raises(openapi.UndocumentedRoute, match="guest"):
        openapi.build_document(app.router)


def test_a_public_route_must_be_public_in_both_places() -> None:
    app = web.Application()
    app.router.add_get("/v1.0/not-public", openapi.openapi_document, allow_head=False)
    with pytest.raises(openapi.UndocumentedRoute, match="disagree"):
        openapi.build_document(app.router)


def test_public_operations_are_exactly_the_public_paths(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    for (method, path), operation in operations(document).items():
        if is_public(path):
            assert operation["security"] == [], (method, path)
        else:
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403", "503"} <= operation["responses"].keys(), (method, path)


def test_every_user_id_in_a_path_is_ten_digits(document: dict[str, Any]) -> None:
    parameter = document["components"]["parameters"]["user_id"]
    assert parameter["in"] == "path"
    assert parameter["required"] is True
    assert parameter["schema"] == {"type": "string", "pattern": "^[0-9]{10}$"}
    for path, item in document["paths"].items():
        if "{user_id}" in path:
            assert item["parameters"] == [{"$ref": "#/components/parameters/user_id"}], path
            for method in item.keys() & METHODS:
                assert "400" in item[method]["responses"], (method, path)


def test_every_error_is_the_contract_body(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    schemas = document["components"]["schemas"]
    for name, response in responses.items():
        ref = response["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[-1]]
        assert schema["properties"]["success"] == {"type": "boolean", "enum": [False]}, name
        assert {"success", "error"} <= set(schema["required"]), name
        assert schema["additionalProperties"] is False, name
    assert "details" in schemas["InvalidInput"]["properties"]
    assert schemas["Unavailable"]["properties"]["cache_available"]["enum"] == [False]
    assert responses["NotAuthenticated"]["headers"]["WWW-Authenticate"]["required"] is True


def test_every_operation_has_a_success_and_only_known_statuses(document: dict[str, Any]) -> None:
    known = {"200", "201", "400", "401", "403", "404", "409", "413", "422", "429", "503"}
    for key, operation in operations(document).items():
        statuses = set(operation["responses"])
        assert statuses <= known, key
        assert statuses & {"200", "201"}, key
        assert operation["operationId"], key


def test_bodies_refuse_unknown_fields_and_use_portable_patterns(document: dict[str, Any]) -> None:
    for (method, path), operation in operations(document).items():
        if "requestBody" not in operation:
            continue
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        assert schema["additionalProperties"] is False, (method, path)
    text = orjson.dumps(document).decode()
    assert not re.search(r"\\\\[AZ]", text), "Python-only regex anchors in the document"
    username = document["components"]["schemas"]["CreateUser"]["properties"]["username"]
    assert username["pattern"] == "^[A-Za-z0-9_.-]{3,32}$"


def test_the_list_filter_offers_only_the_roles_it_accepts(document: dict[str, Any]) -> None:
    parameters = document["paths"]["/v1.0/user/list"]["get"]["parameters"]
    role = next(p for p in parameters if p["name"] == "role")
    assert role["in"] == "query"
    assert role["schema"] == {"type": "string", "enum": ["user", "admin"]}


def test_metrics_are_text_and_the_document_is_json(document: dict[str, Any]) -> None:
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert metrics == {"text/plain": {"schema": {"type": "string"}}}
    own = document["paths"]["/v1.0/openapi.json"]["get"]["responses"]["200"]["content"]
    assert list(own) == ["application/json"]
