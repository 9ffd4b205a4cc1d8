"""README: what a new user reads first stays true to the code."""

from __future__ import annotations

import re
from typing import Final

from hita.cli.seed_cmd import DEMO_USERS
from hita.config import PROJECT_ROOT
from hita.services.seeding import DEMO_ACCOUNTS

README: Final = (PROJECT_ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_links_stay_inside_the_repository_and_name_the_api_reference() -> None:
    links = re.findall(r"\]\(([^)]+)\)", README)
    assert "docs/api.md" in links
    assert not [link for link in links if link.startswith("..")]
    assert "../shared" not in README


def test_the_demo_data_count_is_the_one_the_first_run_loads() -> None:
    assert f"demo data set of {DEMO_USERS + len(DEMO_ACCOUNTS)} users" in README


def test_put_and_patch_are_told_apart() -> None:
    assert "PUT replaces the whole user" in README
    assert "PATCH changes only the fields it names" in README


def test_what_seed_does_to_the_demo_logins_password_is_said() -> None:
    text = section("Command line")
    assert "gives the same password to the three demo" in text
    assert "the previous demo password stops working" in text


def test_running_in_production_covers_what_an_operator_needs() -> None:
    text = section("Running in production")
    for needle in (
        "hita migrate",
        "--role superadmin",
        "JWT_SECRET",
        "HOST=0.0.0.0",
        "CACHE_KEY_PREFIX",
        "X-Forwarded-For",
        "GET /v1.0/health`",
        "GET /v1.0/health/live",
        "503",
    ):
        assert needle in text, needle
