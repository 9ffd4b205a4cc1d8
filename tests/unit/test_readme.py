"""README and docs/: what a new user reads first stays true to the code, and
each topic has one page."""

from __future__ import annotations

import re
from typing import Final

from hita.cli.seed_cmd import DEMO_USERS
from hita.config import PROJECT_ROOT
from hita.services.seeding import DEMO_ACCOUNTS

README: Final = (PROJECT_ROOT / "README.md").read_text()
DOCS: Final = PROJECT_ROOT / "docs"


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_is_a_guide_of_a_few_minutes() -> None:
    assert 120 <= len(README.splitlines()) <= 200


def test_links_stay_inside_the_repository_and_name_the_api_reference() -> None:
    links = re.findall(r"\]\(([^)]+)\)", README)
    assert "docs/api.md" in links
    assert not [link for link in links if link.startswith("..")]
    assert "../shared" not in README
    local = [link for link in links if not link.startswith("https://")]
    assert [link for link in local if not (PROJECT_ROOT / link).exists()] == []


def test_every_page_of_docs_is_in_its_index_and_tells_no_history() -> None:
    index = (DOCS / "README.md").read_text()
    pages = sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md")
    assert [p for p in pages if f"]({p})" not in index] == []
    for page in [DOCS / "README.md", *(DOCS / p for p in pages)]:
        assert not re.search(r"\bissue \d+|\bused to\b", page.read_text(), re.I), page.name


def test_the_demo_data_count_is_the_one_the_first_run_loads() -> None:
    assert f"demo data set of {DEMO_USERS + len(DEMO_ACCOUNTS)} users" in README


def test_the_quick_start_reads_the_demo_password_from_its_file() -> None:
    text = section(README, "Quick start")
    assert ". .venv/bin/activate" in text
    assert "PASSWORD=$(sed -n 's/.*password: //p' .hita/demo-logins.txt)" in text


def test_put_and_patch_are_told_apart() -> None:
    assert "PUT replaces the whole user" in README
    assert "PATCH changes only the fields it names" in README


def test_what_seed_does_to_the_demo_logins_password_is_said() -> None:
    text = section((DOCS / "cli.md").read_text(), "Demo data")
    assert "gives the same password to the three demo" in text
    assert "the previous demo password stops working" in text


def test_the_production_checklist_covers_what_an_operator_needs() -> None:
    text = section(README, "Production checklist")
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
