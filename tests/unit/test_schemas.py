"""Bodies and query strings: unknown fields refused, types strict, per-field details."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import Schema

from hita.api import schemas
from hita.domain.roles import Role
from hita.domain.users import NewUser, UserChanges, UserListQuery
from hita.errors import InvalidInput

GOOD_USER = {
    "username": "anna.smith",
    "email": "anna@hotel.example",
    "full_name": "Anna Smith",
    "password": "long enough",
}


def details(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(InvalidInput) as caught:
        schemas.load(schema, data)
    return caught.value.details


def test_a_valid_new_user_loads_with_defaults() -> None:
    new = schemas.load_as(schemas.CREATE_USER, GOOD_USER, NewUser)
    assert new == NewUser(**GOOD_USER, role=Role.USER, is_active=True)
    assert "long enough" not in repr(new)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "ab"}, "username"),
        ({"username": "anna smith"}, "username"),
        ({"username": "anna\n"}, "username"),
        ({"username": "a" * 33}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@" + "b" * 260 + ".example"}, "email"),
        ({"full_name": "   "}, "full_name"),
        ({"full_name": "x" * 101}, "full_name"),
        ({"password": "short"}, "password"),
        ({"password": "p" * 129}, "password"),
        ({"role": "root"}, "role"),
        ({"is_active": 1}, "is_active"),
        ({"is_active": "true"}, "is_active"),
        ({"username": 12345}, "username"),
        ({"extra": "field"}, "extra"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    assert field in details(schemas.CREATE_USER, {**GOOD_USER, **change})


def test_missing_fields_are_each_reported() -> None:
    assert set(details(schemas.CREATE_USER, {})) == {"username", "email", "full_name", "password"}


def test_patch_needs_one_field_and_put_needs_all() -> None:
    assert details(schemas.PATCH_USER, {}) == {"_schema": ["Give at least one field to change."]}
    changes = schemas.load_as(schemas.PATCH_USER, {"full_name": "New"}, UserChanges)
    assert changes == UserChanges(full_name="New")
    assert set(details(schemas.PUT_USER, {"full_name": "New"})) == {
        "username",
        "email",
        "role",
        "is_active",
    }


@pytest.mark.parametrize(
    "body",
    [
        {"amount": True, "reason": "stay"},
        {"amount": 1.5, "reason": "stay"},
        {"amount": "10", "reason": "stay"},
        {"amount": 0, "reason": "stay"},
        {"amount": -5, "reason": "stay"},
        {"amount": 1_000_001, "reason": "stay"},
    ],
)
def test_amounts_are_positive_json_integers(body: dict[str, Any]) -> None:
    assert "amount" in details(schemas.POINTS, body)


@pytest.mark.parametrize(
    "permission", ["reservations", "Reservations.write", "reservations.", ".write", "a.b c", "a..b"]
)
def test_permissions_are_dotted_lower_case_names(permission: str) -> None:
    assert "permission" in details(schemas.PERMISSION, {"permission": permission})
    assert schemas.load(schemas.PERMISSION, {"permission": "reservations.write"})


def test_list_query_parses_text_and_defaults() -> None:
    query = schemas.load_as(
        schemas.USER_LIST_QUERY,
        {"page": "2", "page_size": "50", "role": "admin", "is_active": "false", "search": "ann"},
        UserListQuery,
    )
    assert query == UserListQuery(2, 50, Role.ADMIN, False, "ann")
    assert query.offset == 50
    assert schemas.load_as(schemas.USER_LIST_QUERY, {}, UserListQuery) == UserListQuery()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "101"}, "page_size"),
        ({"page": "102", "page_size": "100"}, "page"),
        ({"role": "superadmin"}, "role"),
        ({"is_active": "yes"}, "is_active"),
        ({"search": ""}, "search"),
        ({"search": "s" * 101}, "search"),
        ({"sort": "name"}, "sort"),
    ],
)
def test_bad_query_parameters_are_named(query: dict[str, str], field: str) -> None:
    assert field in details(schemas.USER_LIST_QUERY, query)


def test_the_deepest_page_is_bounded() -> None:
    assert schemas.load(schemas.PAGE_QUERY, {"page": "101", "page_size": "100"})
    assert "page" in details(schemas.PAGE_QUERY, {"page": "102", "page_size": "100"})
