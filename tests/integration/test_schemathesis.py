"""schemathesis against the service's own OpenAPI document.

The real app runs on 127.0.0.1 over the session's PostgreSQL and Redis; every
operation of the document gets its examples, coverage cases and up to
``MAX_EXAMPLES`` fuzzed cases (deterministic: the same cases on every run),
sent with a real admin token (a superadmin's for the superadmin route). Each
response must not be a 5xx, and must match the document: status code, content
type, headers and body schema.

The well-formed ids in paths are aimed at users that exist (the admin itself,
the superadmin, a few guests), so that the success bodies are checked too;
the document's example id is left alone, for the 404s. The admin cannot lose
its access to the fuzzer: the rules forbid deleting or deactivating oneself
and changing one's own role (test_users_api.py's
``test_admins_cannot_delete_deactivate_or_demote_themselves``), and an admin
may not touch a superadmin; ``test_the_callers_outlive_the_fuzzer`` checks it
after the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hita.app import create_app
from hita.appkeys import OPENAPI
from hita.domain.ids import is_user_id
from hita.domain.roles import Role
from hita.services.tokens import Tokens
from tests.conftest import empty_database, empty_redis, make_config
from tests.integration.conftest import Account, open_account
from tests.integration.live import LiveServer

MAX_EXAMPLES: Final = 25  # fuzzed cases per operation, besides the examples and coverage cases
GUESTS: Final = 4
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# The document exactly as the service builds it (create_app does no I/O);
# test_the_served_document_is_the_one_fuzzed checks that it is the one served.
DOCUMENT: Final[dict[str, Any]] = orjson.loads(create_app(make_config())[OPENAPI])
EXAMPLE_USER_ID: Final = DOCUMENT["components"]["parameters"]["user_id"]["example"]
SCHEMA: Final = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                # A failure is reported as found: shrinking it over HTTP has no bound.
                "no-shrink": True,
                "database": "none",
                # The token is ours (a real one), never a generated one.
                "with-security-parameters": False,
            }
        }
    ),
)


@dataclass(frozen=True)
class Live:
    server: LiveServer
    session: requests.Session
    admin: Account
    superadmin: Account
    known_ids: tuple[str, ...]

    def headers_for(self, case: schemathesis.Case[Any]) -> dict[str, str]:
        caller = self.superadmin if case.path.startswith("/v1.0/superadmin/") else self.admin
        return caller.headers

    def aim(self, case: schemathesis.Case[Any]) -> None:
        """Point every well-formed user id but the document's example (which
        stays a user that does not exist) at a user that does."""
        user_id = (case.path_parameters or {}).get("user_id")
        if is_user_id(user_id) and user_id != EXAMPLE_USER_ID:
            case.path_parameters["user_id"] = self.known_ids[int(user_id) % len(self.known_ids)]


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str, schema_tables: list[str]) -> Iterator[Live]:
    config = make_config(DATABASE_URL=database_url, REDIS_URL=redis_url, DB_AUTO_MIGRATE="false")
    tokens = Tokens(config.auth)
    with LiveServer(create_app(config)) as server, requests.Session() as session:
        server.call(empty_database(database_url, schema_tables))
        server.call(empty_redis(redis_url))
        admin = server.call(open_account(server.app, tokens, Role.ADMIN))
        superadmin = server.call(open_account(server.app, tokens, Role.SUPERADMIN))
        guests = [server.call(open_account(server.app, tokens, Role.USER)) for _ in range(GUESTS)]
        known = (admin.id, superadmin.id, *(g.id for g in guests))
        yield Live(server, session, admin, superadmin, known)


@SCHEMA.parametrize()
def test_the_service_keeps_its_document(case: schemathesis.Case[Any], live: Live) -> None:
    live.aim(case)
    case.call_and_validate(
        base_url=live.server.base_url,
        session=live.session,
        headers=live.headers_for(case),
        checks=CHECKS,
    )


def test_the_served_document_is_the_one_fuzzed(live: Live) -> None:
    response = live.session.get(f"{live.server.base_url}/v1.0/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == DOCUMENT


def test_the_callers_outlive_the_fuzzer(live: Live) -> None:
    """Runs after the fuzzing above: both tokens still work, for the same roles."""
    for caller in (live.admin, live.superadmin):
        response = live.session.get(
            f"{live.server.base_url}/v1.0/user/{caller.id}", headers=caller.headers, timeout=10
        )
        assert response.status_code == 200
        user = response.json()["user"]
        assert (user["role"], user["is_active"]) == (caller.role.value, True)
