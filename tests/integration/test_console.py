"""The cache console, as its users meet it: Debian's headless Chromium, driven
by Playwright, against the real service on 127.0.0.1 over the session's
PostgreSQL and Redis.

An admin logs in with the form, waits for the hit-ratio plot to draw at least
two points, and every figure the page shows is checked against the
``/v1.0/cache/stats`` answer it was drawn from (and the stable ones against a
fresh read); "clear user" makes the key count fall; a user's token gets the
login form back, never the data; every request the page makes goes to this
service, and no CSP violation is reported. ``HITA_CONSOLE_SCREENSHOT=path``
also saves the screenshot there (docs/console.png is made so).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import requests

from hita.api.console import ASSETS, CONTENT_SECURITY_POLICY
from hita.app import create_app
from hita.domain.roles import Role
from hita.services.tokens import Tokens
from tests.conftest import empty_database, empty_redis, make_config
from tests.integration.conftest import PASSWORD, Account, open_account, taken_in
from tests.integration.live import LiveServer

pytestmark = pytest.mark.slow

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CONSOLE: Final = "/v1.0/cache/console"
WAIT_MS: Final = 20_000  # for the console's 2 s polls, on a loaded machine
GUESTS: Final = 3
SCREENSHOT_TRAFFIC_S: Final = 60.0

if not CHROMIUM.exists():  # `make test` installs it as root (apt-get install chromium)
    pytest.skip(
        "Debian's chromium is not installed and could not be (make test installs it as root)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402


@dataclass
class Live:
    server: LiveServer
    admin: Account
    user: Account
    guests: list[Account]
    requests_made: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def get(self, path: str, caller: Account | None = None) -> requests.Response:
        headers = caller.headers if caller is not None else {}
        return requests.get(f"{self.base_url}{path}", headers=headers, timeout=10)

    def stats(self) -> dict[str, Any]:
        response = self.get("/v1.0/cache/stats", self.admin)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str, schema_tables: list[str]) -> Iterator[Live]:
    config = make_config(DATABASE_URL=database_url, REDIS_URL=redis_url, DB_AUTO_MIGRATE="false")
    tokens = Tokens(config.auth)
    with LiveServer(create_app(config)) as server:
        server.call(empty_database(database_url, schema_tables))
        server.call(empty_redis(redis_url))
        admin = server.call(open_account(server.app, tokens, Role.ADMIN))
        user = server.call(open_account(server.app, tokens, Role.USER))
        guests = [server.call(open_account(server.app, tokens, Role.USER)) for _ in range(GUESTS)]
        # The TRUNCATE above left "every user changed" in the outbox: swept, it
        # cannot empty user_details:* under the tests' feet.
        server.call(taken_in(server.app))
        yield Live(server, admin, user, guests)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, live: Live) -> Iterator[Page]:
    """A fresh page (its own sessionStorage) that records every request it makes
    and every error the browser reports (a CSP violation is one)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("request", lambda request: live.requests_made.append(request.url))
    opened.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert [e for e in errors if "Content Security Policy" in e or "Refused" in e] == []
    assert [e for e in errors if "Failed to load resource" not in e] == []


def log_in(page: Page, live: Live, account: Account) -> None:
    page.goto(f"{live.base_url}{CONSOLE}")
    page.fill("#username", account.username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")


def settle(live: Live) -> None:
    """A login changes last_login_at: the admin's cached details are dropped by
    the write, by its notification and by the outbox sweep a moment later, and
    cached again by the next request. Wait for all of that, then cache them."""
    live.server.call(taken_in(live.server.app))
    assert live.get("/v1.0/cache/stats", live.admin).status_code == 200


def field_values(page: Page) -> dict[str, Any]:
    """Every ``data-field`` the page shows, with the raw value it keeps, read at once."""
    pairs = page.eval_on_selector_all(
        "[data-field]", "nodes => nodes.map(n => [n.dataset.field, n.dataset.value])"
    )
    values: dict[str, Any] = {}
    for name, raw in pairs:
        assert raw is not None, f"{name} shows nothing"
        values[name] = json.loads(raw)
    return values


def at(body: dict[str, Any], path: str) -> Any:
    node: Any = body
    for part in path.split("."):
        node = node[part]
    return node


# The user_details key count the page shows, as a JavaScript function body.
SHOWN_KEYS: Final = (
    "before => Number(document.querySelector("
    "'#types td[data-field=\"key_counts.user_details_keys\"]')?.dataset.value)"
)


def shown_keys(page: Page, family: str) -> int:
    raw = page.get_attribute(f'#types td[data-field="key_counts.{family}_keys"]', "data-value")
    assert raw is not None
    return int(raw)


def test_an_admin_sees_live_figures_that_match_the_stats(page: Page, live: Live) -> None:
    for guest in live.guests:  # some cached reads, so every family has something to show
        assert live.get(f"/v1.0/user/{guest.id}", live.admin).status_code == 200
    assert live.get("/v1.0/dashboard/stats", live.admin).status_code == 200
    log_in(page, live, live.admin)
    page.wait_for_selector("#console:not([hidden])", timeout=WAIT_MS)
    settle(live)
    for _ in range(3):  # reads between polls, so the plots have something to draw
        live.get("/v1.0/dashboard/stats", live.admin)
        live.get("/v1.0/user/list", live.admin)
        page.wait_for_timeout(700)
    page.wait_for_function(
        "() => Number(document.getElementById('plot-types').dataset.points) >= 2",
        timeout=WAIT_MS,
    )
    assert int(page.get_attribute("#plot-types", "data-points") or 0) >= 2
    assert page.locator("#plot-types polyline").count() >= 1
    assert (page.text_content("#request-p99") or "").endswith(" ms")

    # Every figure shown is the one of the answer it was drawn from ...
    with page.expect_response(lambda r: r.url.endswith("/v1.0/cache/stats")) as answer:
        pass
    body = answer.value.json()
    page.wait_for_function(
        "at => document.getElementById('console').dataset.at === at",
        arg=json.dumps(body["instance"]["at"]),
        timeout=WAIT_MS,
    )
    shown = field_values(page)
    assert len(shown) >= 25
    for name, value in shown.items():
        assert value == at(body, name), name
    # ... and the ones that do not move by themselves are what a client reads now.
    fresh = live.stats()
    assert fresh["key_counts"] == body["key_counts"]
    for name in (
        "instance.breaker.state",
        "instance.topology.mode",
        "instance.l1.enabled",
        "instance.l1.entries",
        "instance.coherence.pending_invalidations",
        "instance.refresher.runs",
        "redis_memory.max_bytes",
    ):
        assert shown[name] == at(fresh, name), name
    assert shown["instance.breaker.state"] == "closed"
    assert shown["key_counts.user_details_keys"] >= GUESTS + 1  # the guests and the admin

    target = os.environ.get("HITA_CONSOLE_SCREENSHOT")
    if target:  # the picture in the README: a minute of mixed traffic first
        traffic(live, SCREENSHOT_TRAFFIC_S)
    screenshot = page.screenshot(full_page=True)
    assert screenshot.startswith(b"\x89PNG")
    if target:
        Path(target).write_bytes(screenshot)


def traffic(live: Live, seconds: float) -> None:
    """Reads of every cached kind, and now and then a write that invalidates them."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        for guest in live.guests:
            live.get(f"/v1.0/user/{guest.id}", live.admin)
        live.get(f"/v1.0/user/list?page={1 + rounds % 3}", live.admin)
        live.get("/v1.0/dashboard/stats", live.admin)
        live.get("/v1.0/user/stats", live.admin)
        if rounds % 15 == 0:
            requests.post(
                f"{live.base_url}/v1.0/points/{live.guests[rounds % GUESTS].id}/add",
                json={"amount": 5, "reason": "stay"},
                headers=live.admin.headers,
                timeout=10,
            )
        time.sleep(0.05)


def test_clear_user_makes_the_key_count_fall(page: Page, live: Live) -> None:
    guest = live.guests[0]
    assert live.get(f"/v1.0/user/{guest.id}", live.admin).status_code == 200  # cached now
    log_in(page, live, live.admin)
    page.wait_for_selector("#console:not([hidden])", timeout=WAIT_MS)
    settle(live)
    before = live.stats()["key_counts"]["user_details_keys"]
    page.wait_for_function(SHOWN_KEYS + " === before", arg=before, timeout=WAIT_MS)
    assert (
        shown_keys(page, "user_details")
        == before
        == live.stats()["key_counts"]["user_details_keys"]
    )

    page.fill("#user-id", guest.id)
    page.click("#clear-user")
    assert page.locator("#confirm").is_visible()  # nothing happens before confirming
    assert guest.id in (page.text_content("#confirm-text") or "")
    page.click("#confirm-yes")
    page.wait_for_function(SHOWN_KEYS + " < before", arg=before, timeout=WAIT_MS)
    assert shown_keys(page, "user_details") == before - 1
    assert f"Cache cleared for user {guest.id}" in (page.text_content("#action-result") or "")


def test_a_cancelled_action_does_nothing(page: Page, live: Live) -> None:
    log_in(page, live, live.admin)
    page.wait_for_selector("#console:not([hidden])", timeout=WAIT_MS)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.click("#warm")
    page.click("#confirm-no")
    page.wait_for_timeout(500)
    assert posts == []


def test_a_user_token_gets_the_login_form_back_not_the_data(page: Page, live: Live) -> None:
    page.goto(f"{live.base_url}{CONSOLE}")
    page.fill("#token", live.user.token)
    page.click("#token-submit")
    page.wait_for_function(
        "() => document.getElementById('login-message').textContent.includes('admin')",
        timeout=WAIT_MS,
    )
    assert page.locator("#login").is_visible()
    assert not page.locator("#console").is_visible()
    assert all(
        value is None
        for value in page.eval_on_selector_all(
            "[data-field]", "nodes => nodes.map(n => n.dataset.value ?? null)"
        )
    )
    assert page.evaluate("() => sessionStorage.getItem('hita.console.token')") is None
    # The same with the login form: a user's password opens nothing either.
    log_in(page, live, live.user)
    page.wait_for_function(
        "() => document.getElementById('login-message').textContent.includes('admin')",
        timeout=WAIT_MS,
    )
    assert not page.locator("#console").is_visible()


def test_the_page_loads_nothing_from_outside_the_service(page: Page, live: Live) -> None:
    live.requests_made.clear()
    log_in(page, live, live.admin)
    page.wait_for_selector("#console:not([hidden])", timeout=WAIT_MS)
    page.wait_for_timeout(2_500)  # a poll or two
    made = list(live.requests_made)
    assert any(url.endswith("/v1.0/cache/stats") for url in made)
    assert any(url.endswith("/console/console.js") for url in made)
    assert [url for url in made if not url.startswith(f"{live.base_url}/")] == []
    html = live.get(CONSOLE).text
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?:[a-z]+:|//)""", html, re.IGNORECASE)
    assert "<script>" not in html
    assert "style=" not in html


def test_static_files_carry_the_csp_and_hold_no_data(live: Live) -> None:
    for path in (CONSOLE, *(f"{CONSOLE}/{name}" for name in ASSETS)):
        response = live.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Authorization" not in response.request.headers
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert live.get(f"{CONSOLE}/other.js").status_code == 404
    traversal = live.get(f"{CONSOLE}/..%2Fconsole.py")  # not public, and no such file
    assert traversal.status_code in {401, 404}
    assert "import" not in traversal.text
    page = live.get(CONSOLE).text
    assert live.admin.id not in page
    assert "user_details_keys" not in page


def test_the_console_s_data_needs_admin_rights(live: Live) -> None:
    assert live.get("/v1.0/cache/stats").status_code == 401
    assert live.get("/v1.0/cache/stats", live.user).status_code == 403
    assert live.get("/v1.0/cache/stats", live.admin).status_code == 200
    for path in ("/v1.0/cache/clear/user/" + live.guests[1].id, "/v1.0/cache/warm"):
        response = requests.post(f"{live.base_url}{path}", headers=live.user.headers, timeout=10)
        assert response.status_code == 403, path


def test_the_screenshot_in_docs_is_a_picture_of_the_console() -> None:
    shot = Path(__file__).resolve().parents[2] / "docs" / "console.png"
    assert shot.read_bytes().startswith(b"\x89PNG")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "docs/console.png" in readme


def test_polls_keep_coming(page: Page, live: Live) -> None:
    """The page keeps polling: two answers, about ``POLL_MS`` apart."""
    log_in(page, live, live.admin)
    page.wait_for_selector("#console:not([hidden])", timeout=WAIT_MS)
    stamps = []
    for _ in range(2):
        with page.expect_response(lambda r: r.url.endswith("/v1.0/cache/stats"), timeout=WAIT_MS):
            pass
        stamps.append(time.monotonic())
    assert 0.5 < stamps[1] - stamps[0] < 10
