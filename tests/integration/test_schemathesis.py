"""schemathesis against the service's own OpenAPI document, with every check.

The real app runs on 127.0.0.1 over the session's PostgreSQL and Redis, and
schemathesis reads the checkout's ``schemathesis.toml`` as ``st run`` does.
Every check schemathesis has runs on every answer: no 5xx; status, content
type, headers and body as documented; schema-valid requests accepted (a
business rule's 422 only where the document marks one), schema-invalid ones
refused; 405 with an exact ``Allow`` for a method a path lacks; a token
required where the document says so; and, in the stateful phase, nothing
found after its delete.

- Per operation: the examples, the coverage cases and up to ``MAX_EXAMPLES``
  fuzzed cases, sent with a real admin token (a superadmin's for the
  superadmin route). The well-formed ids in paths are aimed at users that
  exist (the admin itself, the superadmin, a few guests), so that success
  bodies are checked too; the document's example id is left alone, for the
  404s.
- Stateful: up to ``STATEFUL_SCENARIOS`` scenarios of up to
  ``STATEFUL_STEPS`` calls each, following the document's links (create a
  user, read it, change it, delete it, give it points and permissions), as
  the superadmin, who may do all of it.

Everything is derandomized: the same cases on every run, no shrinking (a
failure is reported as found: shrinking over HTTP has no bound), no example
database. The callers cannot lose their access to the fuzzer: nobody may
delete, deactivate or demote themselves, an admin may not touch a
superadmin, and updates (which may change a password, ending the tokens
issued before it) are aimed at guests only; ``test_the_callers_outlive_the_fuzzer``
checks it after the run.
"""

from __future__ import annotations

import contextlib
import copy
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from schemathesis.checks import CHECKS, load_all_checks

from hita.app import create_app
from hita.appkeys import OPENAPI
from hita.domain.ids import is_user_id
from hita.domain.roles import Role
from hita.services.tokens import Tokens
from tests.conftest import empty_database, empty_redis, make_config
from tests.integration.conftest import Account, open_account
from tests.integration.live import LiveServer

MAX_EXAMPLES: Final = 25  # fuzzed cases per operation, besides the examples and coverage cases
STATEFUL_SCENARIOS: Final = 30
STATEFUL_STEPS: Final = 6
STATEFUL_SUITES: Final = 20  # seeds 0, 1, ...: at most this many suites
GUESTS: Final = 4
CONFIG_FILE: Final = Path(__file__).resolve().parents[2] / "schemathesis.toml"

load_all_checks()
EVERY_CHECK: Final = [check for check in CHECKS.get_all() if not isinstance(check, type)]

# The document exactly as the service builds it (create_app does no I/O);
# test_the_served_document_is_the_one_fuzzed checks that it is the one served.
DOCUMENT: Final[dict[str, Any]] = orjson.loads(create_app(make_config())[OPENAPI])
EXAMPLE_USER_ID: Final = DOCUMENT["components"]["parameters"]["user_id"]["example"]
# schemathesis.toml as `st run` reads it, plus how this suite generates.
CONFIG: Final = schemathesis.Config.from_dict(
    {
        **tomllib.loads(CONFIG_FILE.read_text()),
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "no-shrink": True,
            "database": "none",
            # The token is ours (a real one), never a generated one.
            "with-security-parameters": False,
        },
    }
)
# A copy: schemathesis adds the links it infers to the document it is given.
SCHEMA: Final = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=CONFIG)


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
        stays a user that does not exist) at a user that does; a change that
        may carry a password only at a guest (a password change ends the
        tokens issued before it, the callers' own included)."""
        user_id = (case.path_parameters or {}).get("user_id")
        if is_user_id(user_id) and user_id != EXAMPLE_USER_ID:
            targets = self.known_ids[2:] if "/user/update/" in case.path else self.known_ids
            case.path_parameters["user_id"] = targets[int(user_id) % len(targets)]


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


def test_every_check_runs() -> None:
    names = {check.__name__ for check in EVERY_CHECK}
    assert {
        "not_a_server_error",
        "positive_data_acceptance",
        "negative_data_rejection",
        "allow_header_conformance",
        "unsupported_method",
        "response_schema_conformance",
        "use_after_free",
        "ensure_resource_availability",
        "ignored_auth",
    } <= names
    assert len(names) >= 14
    assert len(EVERY_CHECK) == len(CHECKS.get_all())  # every one a function to pass along


@SCHEMA.parametrize()
def test_the_service_keeps_its_document(case: schemathesis.Case[Any], live: Live) -> None:
    live.aim(case)
    case.call_and_validate(
        base_url=live.server.base_url,
        session=live.session,
        headers=live.headers_for(case),
        checks=EVERY_CHECK,
    )


def test_the_document_links_a_user_to_what_is_done_with_it() -> None:
    links = [
        link
        for item in DOCUMENT["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "responses" in operation
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) > 20


def test_workflows_along_the_links_keep_the_document(live: Live) -> None:
    """Suites of scenarios, each with its own fixed seed, until
    ``STATEFUL_SCENARIOS`` have run. The service's state carries over from one
    scenario to the next (users created, deleted, changed), so Hypothesis may
    find that the same choices no longer lead to the same rules
    (``FlakyStrategyDefinition``): that suite ends there and the next seed goes
    on, as ``st run`` does. Any failure is raised, also one that a replay did
    not reproduce (``FlakyFailure``)."""
    scenarios = 0

    # A RecordingStateMachine: the stateful checks see the scenario's earlier calls.
    class Workflow(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {
                "base_url": live.server.base_url,
                "session": live.session,
                "headers": live.superadmin.headers,
            }

        def before_call(self, case: schemathesis.Case[Any]) -> None:
            self.called = True
            super().before_call(case)

        def teardown(self) -> None:
            nonlocal scenarios
            scenarios += getattr(self, "called", False)  # Hypothesis tries empty ones too
            super().teardown()

    settings = hypothesis.settings(
        max_examples=STATEFUL_SCENARIOS,
        stateful_step_count=STATEFUL_STEPS,
        database=None,
        phases=[hypothesis.Phase.generate],
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    for seed in range(STATEFUL_SUITES):
        Workflow.rule_order_seed = seed
        with contextlib.suppress(hypothesis.errors.FlakyStrategyDefinition):
            hypothesis.seed(seed)(Workflow).run(settings=settings)
        if scenarios >= STATEFUL_SCENARIOS:
            break
    assert scenarios >= STATEFUL_SCENARIOS


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
