"""GET /metrics: Prometheus text, labelled by route template, with cache figures."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from hita.domain.roles import Role
from tests.integration.conftest import World


async def scrape(world: World) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = await world.client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


async def test_http_requests_are_counted_per_route_template_not_per_path(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guests = [await world.make_user() for _ in range(3)]
    for guest in guests:
        await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)
    await world.client.get("/v1.0/no/such/route/1")
    await world.client.get("/v1.0/no/such/route/2")
    samples = await scrape(world)
    routes = {labels["route"] for labels, _ in samples["hita_http_requests_total"]}
    assert "/v1.0/user/{user_id}" in routes
    assert not any(guest.id in route for route in routes for guest in guests)
    assert (
        value(
            samples,
            "hita_http_requests_total",
            route="/v1.0/user/{user_id}",
            method="GET",
            status="200",
        )
        == 3
    )
    assert value(samples, "hita_http_requests_total", route="unmatched", status="404") == 2
    assert (
        value(samples, "hita_http_request_duration_seconds_count", route="/v1.0/user/{user_id}")
        == 3
    )


async def test_methods_beyond_http_s_own_share_one_label(world: World) -> None:
    for method in ("PROPFIND", "MKCOL", "PURGE"):  # the parser knows them; we do not
        response = await world.client.request(method, "/v1.0/health")
        assert response.status == 405
    samples = await scrape(world)
    methods = {labels["method"] for labels, _ in samples["hita_http_requests_total"]}
    assert not methods & {"PROPFIND", "MKCOL", "PURGE"}
    assert value(samples, "hita_http_requests_total", method="OTHER", status="405") == 3


async def test_cache_figures_per_type_breaker_pending_and_refresh(world: World) -> None:
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    for _ in range(3):
        await world.client.get("/v1.0/dashboard/stats", headers=admin.headers)
    await world.client.post(
        f"/v1.0/points/{guest.id}/add", json={"amount": 5, "reason": "x"}, headers=admin.headers
    )
    samples = await scrape(world)
    assert value(samples, "hita_cache_hits_total", type="dashboard_stats") == 2
    assert value(samples, "hita_cache_misses_total", type="dashboard_stats") == 1
    assert value(samples, "hita_cache_sets_total", type="dashboard_stats") == 1
    assert (
        value(samples, "hita_cache_invalidations_total", type="dashboard_stats", cause="http") == 1
    )
    assert value(samples, "hita_cache_breaker_state", state="closed") == 1
    assert value(samples, "hita_cache_breaker_state", state="open") == 0
    assert value(samples, "hita_cache_pending_invalidations") == 0
    assert "hita_stats_refresh_runs_total" in samples
    assert "hita_stats_refresh_last_success_timestamp_seconds" in samples
