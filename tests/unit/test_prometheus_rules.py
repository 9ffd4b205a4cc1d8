"""deploy/prometheus: ``promtool check rules`` and ``promtool test rules`` pass,
and every alert has a test that fires it and one that must not; the Grafana
dashboard's queries are valid PromQL and use only recorded names that the
rules define. (That every metric they read is exposed is checked against a
real ``/metrics`` in tests/integration/test_observability_doc.py.)

promtool comes from Debian's ``prometheus`` package, which ``make test``
installs when it runs as root.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.promql import metric_names

DEPLOY: Final = Path(__file__).resolve().parents[2] / "deploy"
RULES: Final = DEPLOY / "prometheus" / "hita-rules.yml"
RULE_TESTS: Final = sorted((DEPLOY / "prometheus").glob("*.test.yml"))
DASHBOARD: Final = DEPLOY / "grafana" / "hita-dashboard.json"
PROMTOOL: Final = shutil.which("promtool")
GRAFANA_VARIABLES: Final = {"$__rate_interval": "5m", "$__interval": "1m"}
# The panels the dashboard must have (issue 20), by a word of their title.
PANELS: Final = (
    "Request rate",
    "5xx",
    "p50 / p99",
    "Hit ratio per cache type",
    "Hit ratio per tier",
    "L1 entries",
    "L1 bytes",
    "L1 evictions",
    "Pending invalidations",
    "Outbox lag",
    "Breaker state",
    "PostgreSQL pool",
    "Overload refusals",
)

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed and could not be: make test installs Debian's "
    "prometheus package when it runs as root",
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=110, check=False
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every query of the dashboard, variables included."""
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(<series selector>, <label>)
            selector = variable["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
            yield f"${variable['name']}", selector


@needs_promtool
def test_the_rules_are_valid() -> None:
    checked = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    tested = promtool("test", "rules", *(t.name for t in RULE_TESTS), cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_has_a_firing_and_a_non_firing_case() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert len(alerts) >= 9
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert sorted(alerts - firing) == [], "alerts no test fires"
    assert sorted(alerts - quiet) == [], "alerts no test holds back"
    assert firing | quiet <= alerts


def test_the_recorded_names_the_rules_and_the_dashboard_read_are_defined() -> None:
    names = recorded()
    used = {n for rule in rules() for n in metric_names(rule["expr"]) if ":" in n}
    used |= {n for _, expr in dashboard_queries() for n in metric_names(expr) if ":" in n}
    assert sorted(used - names) == []


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query, its Grafana variables replaced, as a recording rule ``promtool`` checks."""
    exprs = []
    for _, query in dashboard_queries():
        expr = query
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        exprs.append(expr)
    rule_file = tmp_path / "dashboard.yml"
    rule_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "dashboard",
                        "rules": [
                            {"record": f"dashboard:query{i}", "expr": e}
                            for i, e in enumerate(exprs)
                        ],
                    }
                ]
            }
        )
    )
    checked = promtool("check", "rules", rule_file.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_has_the_panels_an_operator_needs() -> None:
    titles = [title for title, _ in dashboard_queries()]
    for wanted in PANELS:
        assert any(wanted in title for title in titles), wanted
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(
        panel.get("datasource", {}).get("uid") == "${datasource}"
        for panel in dashboard["panels"]
        if panel["type"] != "row"
    )
