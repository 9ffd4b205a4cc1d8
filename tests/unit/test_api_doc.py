"""docs/api.md and the OpenAPI document name the same operations, for the same callers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from hita.app import create_app
from hita.appkeys import OPENAPI
from tests.conftest import make_config

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ROW = re.compile(r"^\|\s*(?P<method>[A-Z]+)\s*\|\s*`(?P<path>/[^`]*)`\s*\|\s*(?P<who>[^|]+?)\s*\|")
# The first sentence of an operation's description says who may call it.
WHO = {
    "Anyone, without a token.": "anyone",
    "An admin.": "admin",
    "A superadmin.": "superadmin",
    "The user itself, or an admin.": "self or admin",
}

Key = tuple[str, str]


@pytest.fixture(scope="module")
def documented() -> dict[Key, str]:
    """(method, path) -> who, from the OpenAPI document."""
    document: dict[str, Any] = orjson.loads(create_app(make_config())[OPENAPI])
    result = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method.upper() not in METHODS:
                continue
            sentence = next(w for w in WHO if operation["description"].startswith(w))
            assert (WHO[sentence] == "anyone") == (operation["security"] == []), (method, path)
            result[(method.upper(), path)] = WHO[sentence]
    return result


@pytest.fixture(scope="module")
def written() -> dict[Key, str]:
    """(method, path) -> who, from the tables of docs/api.md (one operation a row)."""
    result: dict[Key, str] = {}
    for line in API_DOC.read_text().splitlines():
        match = ROW.match(line)
        if match is None or match["method"] not in METHODS:
            continue
        key = (match["method"], match["path"])
        assert key not in result, f"{key} is written twice"
        result[key] = match["who"]
    return result


def test_every_operation_is_in_the_reference_and_nothing_else(
    documented: dict[Key, str], written: dict[Key, str]
) -> None:
    assert len(documented) > 20
    assert sorted(set(documented) - set(written)) == [], "operations missing from docs/api.md"
    assert sorted(set(written) - set(documented)) == [], "rows of docs/api.md the service lacks"


def test_the_reference_names_the_same_callers(
    documented: dict[Key, str], written: dict[Key, str]
) -> None:
    assert {key: written[key] for key in documented} == documented


def test_the_readme_points_at_the_reference() -> None:
    readme = (API_DOC.parents[1] / "README.md").read_text()
    assert "(docs/api.md)" in readme
    assert "shared/CONTRACT.md" not in readme
