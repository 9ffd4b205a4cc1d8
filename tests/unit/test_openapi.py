"""The OpenAPI document: valid, and exactly the router's routes, with their access,
all read from the route table."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from aiohttp import web
from openapi_spec_validator import validate
from schemathesis.core.result import Ok

from hita import errors
from hita.api import openapi, schemas
from hita.api import openapi_schemas as out
from hita.api.route import ADMIN, PUBLIC, Doc, Route
from hita.api.routes import ROUTES
from hita.app import create_app
from hita.appkeys import OPENAPI
from hita.domain.users import MAX_LIST_OFFSET_ROWS, MAX_PAGE, MAX_PAGE_SIZE
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]

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
    heads = {(method, path) for method, path in routes if method == "HEAD"}
    assert set(operations(document)) == routes - heads
    assert ("GET", "/v1.0/openapi.json") in routes
    # HEAD is GET without the body: on every GET route, and not an operation of its own.
    assert heads == {("HEAD", path) for method, path in routes if method == "GET"}


async def somewhere(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_is_documented_from_its_table_entry_alone() -> None:
    route = Route(
        "GET",
        "/v1.0/somewhere",
        somewhere,
        ADMIN,
        Doc("x", "Somewhere", out.MessageSchema),
        cached=True,
    )
    document = openapi.build_document([route])
    operation = document["paths"]["/v1.0/somewhere"]["get"]
    assert operation["operationId"] == "test_openapi_somewhere"
    assert operation["security"] == [{"bearerAuth": []}]
    assert operation["description"] == "An admin."
    assert {"200", "304", "401", "403", "503"} == operation["responses"].keys()
    assert [p["name"] for p in operation["parameters"]] == ["If-None-Match"]


def test_a_path_parameter_without_a_definition_stops_the_build() -> None:
    route = Route("GET", "/v1.0/user/{guest}", somewhere, PUBLIC, Doc("x", "A guest", {}))
    with pytest.raises(openapi.UndocumentedRoute, match="guest"):
        openapi.build_document([route])


def test_public_operations_are_exactly_the_public_paths(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    public = {(route.method, route.path) for route in ROUTES if route.access.public}
    for (method, path), operation in operations(document).items():
        if (method, path) in public:
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
    known = {"200", "201", "304", "400", "401", "403", "404", "409", "413", "422", "429", "503"}
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


def request_strings(document: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every string a client sends in a body or a query string: (method path, field) -> schema."""
    schemas = document["components"]["schemas"]
    strings = {}
    for (method, path), operation in operations(document).items():
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "header" and parameter["schema"].get("type") == "string":
                strings[(method, path, parameter["name"])] = parameter["schema"]
        if "requestBody" in operation:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            properties = schemas[ref.rsplit("/", 1)[-1]]["properties"]
            for name, prop in properties.items():
                if prop.get("type") == "string":
                    strings[(method, path, name)] = prop
    return strings


def test_no_string_a_client_sends_may_hold_nul(document: dict[str, Any]) -> None:
    """PostgreSQL cannot store NUL: the service refuses it, and the document says so."""
    strings = request_strings(document)
    assert len(strings) > 15
    for key, schema in strings.items():
        if "enum" in schema:
            continue
        assert "pattern" in schema or schema.get("format") == "email", key
        if "pattern" in schema:
            assert not re.search(schema["pattern"], "abc\x00def"), key


def test_fields_that_may_not_be_blank_say_so(document: dict[str, Any]) -> None:
    not_blank = {
        key: schema
        for key, schema in request_strings(document).items()
        if key[2] in {"full_name", "reason", "search"}
    }
    assert len(not_blank) == 6  # create, put, patch; add, redeem (one schema); list
    for key, schema in not_blank.items():
        assert not re.search(schema["pattern"], " \t\u00a0\u3000\x1f"), key
        assert re.search(schema["pattern"], " a b "), key


def test_the_space_class_is_exactly_what_python_strips() -> None:
    space = re.compile(f"[{schemas.SPACE_CHARS}]")
    assert [
        c for c in map(chr, range(sys.maxunicode + 1)) if bool(space.match(c)) != c.isspace()
    ] == []


def test_a_patch_names_at_least_one_field(document: dict[str, Any]) -> None:
    assert document["components"]["schemas"]["PatchUser"]["minProperties"] == 1
    with pytest.raises(errors.InvalidInput):
        schemas.load(schemas.PATCH_USER, {})


def test_the_deepest_page_is_a_maximum_of_the_page_parameter(document: dict[str, Any]) -> None:
    assert (MAX_PAGE - 1) * MAX_PAGE_SIZE <= MAX_LIST_OFFSET_ROWS < MAX_PAGE * MAX_PAGE_SIZE
    paged = 0
    for (method, path), operation in operations(document).items():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "page":
                assert parameter["schema"]["maximum"] == MAX_PAGE, (method, path)
                paged += 1
    assert paged == 3
    assert schemas.load(schemas.PAGE_QUERY, {"page": str(MAX_PAGE), "page_size": "1"})
    with pytest.raises(errors.InvalidInput):
        schemas.load(schemas.PAGE_QUERY, {"page": str(MAX_PAGE + 1), "page_size": "1"})


def test_only_business_rules_answer_422_and_each_names_its_rules(document: dict[str, Any]) -> None:
    with_422 = {}
    for key, operation in operations(document).items():
        response = operation["responses"].get("422")
        if response is not None:
            assert response[openapi.BUSINESS_RULE] is True, key
            with_422[key] = response["description"]
    assert set(with_422) == {
        ("PUT", "/v1.0/user/update/{user_id}"),
        ("PATCH", "/v1.0/user/update/{user_id}"),
        ("DELETE", "/v1.0/user/delete/{user_id}"),
        ("POST", "/v1.0/user/{user_id}/deactivate"),
        ("POST", "/v1.0/points/{user_id}/add"),
        ("POST", "/v1.0/points/{user_id}/redeem"),
    }
    assert "Idempotency-Key" in with_422[("POST", "/v1.0/points/{user_id}/add")]
    assert "own role" in with_422[("PATCH", "/v1.0/user/update/{user_id}")]
    assert "delete themselves" in with_422[("DELETE", "/v1.0/user/delete/{user_id}")]
    assert "balance" in with_422[("POST", "/v1.0/points/{user_id}/redeem")]


def test_schemathesis_lets_exactly_the_business_rule_operations_answer_422(
    document: dict[str, Any],
) -> None:
    """schemathesis.toml, as both `st run` and the suite read it."""
    config = schemathesis.Config.from_path(str(ROOT / "schemathesis.toml"))
    schema = schemathesis.openapi.from_dict(document, config=config)
    allowed = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        for phase in ("examples", "coverage", "fuzzing", "stateful"):
            checks = schema.config.checks_config_for(operation=operation, phase=phase)
            if "422" in checks.positive_data_acceptance.expected_statuses:
                allowed.add((operation.method.upper(), operation.path))
    declared = {key for key, op in operations(document).items() if "422" in op["responses"]}
    assert allowed == declared


def test_links_lead_from_a_user_to_what_is_done_with_it(document: dict[str, Any]) -> None:
    ids = {op["operationId"]: key for key, op in operations(document).items()}
    create = document["paths"]["/v1.0/user/create"]["post"]["responses"]["201"]["links"]
    read = document["paths"]["/v1.0/user/{user_id}"]["get"]["responses"]["200"]["links"]
    assert "users_get_user" in create
    assert {
        "users_put_user",
        "users_patch_user",
        "users_delete_user",
        "points_add_points",
        "points_points_history",
        "permissions_get_permissions",
        "permissions_grant_permission",
    } <= read.keys()
    for link in (*create.values(), *read.values()):
        assert link["operationId"] in ids
        assert "{user_id}" in ids[link["operationId"]][1]
        assert link["parameters"] == {"user_id": "$response.body#/user/id"}


def test_the_cached_reads_document_their_etag_and_304(document: dict[str, Any]) -> None:
    tagged = {key for key, op in operations(document).items() if "304" in op["responses"]}
    assert tagged == {("GET", route.path) for route in ROUTES if route.cached}
    for key in tagged:
        operation = operations(document)[key]
        assert operation["responses"]["200"]["headers"]["ETag"]["required"] is True, key
        assert "content" not in operation["responses"]["304"], key
        assert "ETag" in operation["responses"]["304"]["headers"], key
        names = [p.get("name") for p in operation["parameters"]]
        assert "If-None-Match" in names, key
