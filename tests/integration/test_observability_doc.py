"""docs/observability.md lists exactly what ``/metrics`` exposes, and the
Grafana dashboard and the Prometheus rules read only what it exposes.

A run touches every route of the service (each template shows up in
``hita_http_requests_total``), then the exposition is compared with the
document's table both ways: every metric exposed is documented, with its
type and labels, and every metric documented is exposed. Every metric name
in every dashboard query and rule expression is a series of that exposition
(or a name the rules record).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from hita.api.routes import ROUTES
from hita.appkeys import CACHE
from hita.domain.roles import Role
from tests.integration.conftest import World, notifications_settled
from tests.promql import metric_names
from tests.unit.test_prometheus_rules import dashboard_queries, recorded, rules

DOC: Final = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
# | `hita_cache_hits_total` | counter | `type` | reads | ... |
ROW: Final = re.compile(
    r"^\|\s*`(?P<name>hita_[a-z0-9_]+)`\s*\|\s*(?P<type>[a-z]+)\s*\|(?P<labels>[^|]*)\|"
)
# Families that only a rare event fills (their HELP and TYPE are exposed all the same).
RARELY_SAMPLED: Final = {
    "hita_http_client_disconnects_total",
    "hita_cache_breaker_transitions_total",
}


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, label names), from the document's tables."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        labels = frozenset(re.findall(r"`([a-z_]+)`", match["labels"]))
        assert match["name"] not in found, f"{match['name']} is documented twice"
        found[match["name"]] = (match["type"], labels)
    return found


def query_name(name: str, kind: str) -> str:
    """The name a query uses: a counter's with ``_total``, the rest as exposed."""
    return f"{name}_total" if kind == "counter" else name


async def series_names(world: World) -> set[str]:
    """Every series name a query may read: each sample's, and a counter's
    ``_total`` for a family that has no sample yet."""
    response = await world.client.get("/metrics")
    names: set[str] = set()
    for family in text_string_to_metric_families(await response.text()):
        names |= {sample.name for sample in family.samples}
        if not family.samples:
            names.add(query_name(family.name, family.type))
    return names


async def exposed(world: World) -> dict[str, tuple[str, frozenset[str] | None]]:
    """name -> (type, label names or None when no sample has any yet)."""
    response = await world.client.get("/metrics")
    assert response.status == 200
    found: dict[str, tuple[str, frozenset[str] | None]] = {}
    for family in text_string_to_metric_families(await response.text()):
        labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        name = query_name(family.name, family.type)
        found[name] = (family.type, frozenset(labels) if family.samples else None)
    return found


async def touch_every_route(world: World) -> set[str]:
    """One request (or a few) of every route; returns the templates served."""
    superadmin = await world.make_user(Role.SUPERADMIN)
    admin = await world.make_user(Role.ADMIN, username="ops.admin")
    guest = await world.make_user()
    doomed = await world.make_user()
    a, s = admin.headers, superadmin.headers
    client = world.client
    calls = [
        ("GET", "/v1.0/health", None, None),
        ("GET", "/v1.0/health/live", None, None),
        ("POST", "/v1.0/auth/login", None, {"username": "ops.admin", "password": "wrong"}),
        (
            "POST",
            "/v1.0/user/create",
            a,
            {
                "username": "new.guest",
                "email": "new.guest@hotel.example",
                "full_name": "New Guest",
                "password": "a long password 1",
                "role": "user",
            },
        ),
        ("GET", "/v1.0/user/list", a, None),
        ("GET", "/v1.0/user/list", a, None),
        ("GET", "/v1.0/user/stats", a, None),
        (
            "PUT",
            f"/v1.0/user/update/{guest.id}",
            a,
            {
                "username": guest.username,
                "email": guest.email,
                "full_name": "Put Name",
                "role": "user",
                "is_active": True,
            },
        ),
        ("PATCH", f"/v1.0/user/update/{guest.id}", a, {"full_name": "Patched Name"}),
        ("POST", f"/v1.0/user/{guest.id}/deactivate", a, None),
        ("POST", f"/v1.0/user/{guest.id}/activate", a, None),
        ("GET", f"/v1.0/user/{guest.id}", a, None),
        ("GET", f"/v1.0/user/{guest.id}", a, None),
        ("GET", "/v1.0/dashboard/stats", a, None),
        ("GET", "/v1.0/superadmin/users", s, None),
        ("POST", f"/v1.0/points/{guest.id}/add", a, {"amount": 10, "reason": "stay"}),
        ("POST", f"/v1.0/points/{guest.id}/redeem", a, {"amount": 3, "reason": "drink"}),
        ("GET", f"/v1.0/points/{guest.id}/history", a, None),
        ("GET", f"/v1.0/permissions/{guest.id}", a, None),
        ("POST", f"/v1.0/permissions/{guest.id}/grant", a, {"permission": "spa.book"}),
        ("POST", f"/v1.0/permissions/{guest.id}/revoke", a, {"permission": "spa.book"}),
        ("DELETE", f"/v1.0/user/delete/{doomed.id}", a, None),
        ("GET", "/v1.0/cache/health", None, None),
        ("GET", "/v1.0/cache/health/detailed", a, None),
        ("GET", "/v1.0/cache/stats", a, None),
        ("GET", "/v1.0/cache/test", a, None),
        ("POST", "/v1.0/cache/warm", a, None),
        ("POST", f"/v1.0/cache/clear/user/{guest.id}", a, None),
        ("POST", "/v1.0/cache/clear?family=user_list", a, None),
        ("POST", "/v1.0/cache/clear", a, None),
        ("GET", "/v1.0/cache/console", None, None),
        ("GET", "/v1.0/cache/console/console.js", None, None),
        ("GET", "/v1.0/openapi.json", None, None),
        ("GET", "/metrics", None, None),
        ("GET", "/v1.0/no/such/route", None, None),
    ]
    for method, path, headers, body in calls:
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status < 500, (method, path, response.status)
    await notifications_settled(world)
    await client.get(f"/v1.0/user/{guest.id}", headers=a)  # after the settle: from L1
    response = await client.get("/metrics")
    families = text_string_to_metric_families(await response.text())
    served = next(f for f in families if f.name == "hita_http_requests")
    return {sample.labels["route"] for sample in served.samples}


async def test_the_document_lists_every_metric_exposed_and_only_those(world: World) -> None:
    served = await touch_every_route(world)
    assert served >= {route.path for route in ROUTES}, "the run missed a route"
    assert world.app[CACHE].near is not None  # L1 on: its metrics carry samples
    written = documented()
    shown = await exposed(world)
    assert sorted(set(shown) - set(written)) == [], "exposed but not documented"
    assert sorted(set(written) - set(shown)) == [], "documented but not exposed"
    for name, (kind, labels) in shown.items():
        assert written[name][0] == kind, f"{name}: documented as {written[name][0]}, is {kind}"
        if labels is None:
            assert name in RARELY_SAMPLED, f"{name} has no sample after a run of every route"
        else:
            assert written[name][1] == labels, f"{name}: labels {sorted(labels)}"


async def test_the_dashboard_and_the_rules_read_only_what_is_exposed(world: World) -> None:
    await touch_every_route(world)
    available = await series_names(world) | recorded()
    for title, expr in dashboard_queries():
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        assert sorted(names - available) == [], f"dashboard panel {title!r}"
    for rule in rules():
        name = rule.get("alert") or rule["record"]
        assert sorted(metric_names(rule["expr"]) - available) == [], f"rule {name}"
