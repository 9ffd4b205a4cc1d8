"""One access line per request, unless ACCESS_LOG is off; metrics either way."""

from __future__ import annotations

import dataclasses
import io
import logging
import re

import pytest
from pytest_aiohttp import AiohttpClient

from hita.api.access_log import AccessLog
from hita.app import create_app
from hita.appkeys import ACCESS_LOG
from hita.config import Config
from hita.domain.roles import Role
from tests.integration.conftest import World
from tests.integration.test_metrics import scrape, value

# The text format's line: time, level, logger, [request id], then the message.
LINE_RE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    hita\.access \[(?P<id>[^]]+)\] (?P<message>.*)"
)


def written(sink: io.StringIO, access: AccessLog) -> list[tuple[str, str]]:
    """(request id, message) of each line written so far."""
    access.flush()
    found = []
    for line in sink.getvalue().splitlines():
        match = LINE_RE.fullmatch(line)
        assert match is not None, line
        found.append((match["id"], match["message"]))
    return found


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_access_line_follows_the_setting(
    aiohttp_client: AiohttpClient,
    config: Config,
    caplog: pytest.LogCaptureFixture,
    enabled: bool,
) -> None:
    http = dataclasses.replace(config.http, access_log=enabled)
    sink = io.StringIO()
    access = AccessLog(sink, "text")
    app = create_app(dataclasses.replace(config, http=http), access_log=access)
    client = await aiohttp_client(app)
    assert (ACCESS_LOG in app) == enabled
    with caplog.at_level(logging.INFO, logger="hita.access"):
        for _ in range(3):
            response = await client.get("/v1.0/health")
            assert response.status == 200
            assert len(response.headers["X-Request-ID"]) == 32
    lines = [message for _, message in written(sink, access)]
    assert len(lines) == (3 if enabled else 0)
    assert all(line.startswith("GET /v1.0/health 200 ") for line in lines)
    # The hita.access logger's level rules, as for any logging line: WARNING writes none.
    with caplog.at_level(logging.WARNING, logger="hita.access"):
        assert (await client.get("/v1.0/health")).status == 200
    assert len(written(sink, access)) == len(lines)
    metrics = await (await client.get("/metrics")).text()
    assert 'hita_http_requests_total{method="GET",route="/v1.0/health",status="200"} 4.0' in metrics


async def test_every_answer_has_its_line_its_count_and_its_request_id(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200, 304, 400, 401, 403, 404, 405 and a write: each answer carries a
    request id, is written in one access line with that id, and is counted."""
    admin = await world.make_user(Role.ADMIN)
    guest = await world.make_user()
    other = await world.make_user()
    first = await world.client.get(f"/v1.0/user/{guest.id}", headers=admin.headers)
    etag = first.headers["ETag"]
    asked = [
        ("GET", f"/v1.0/user/{guest.id}", admin.headers, 200),
        ("GET", f"/v1.0/user/{guest.id}", {**admin.headers, "If-None-Match": etag}, 304),
        ("GET", "/v1.0/user/not-an-id", admin.headers, 400),
        ("GET", f"/v1.0/user/{guest.id}", {}, 401),
        ("GET", f"/v1.0/user/{other.id}", guest.headers, 403),
        ("GET", "/v1.0/no/such/route", admin.headers, 404),
        ("DELETE", "/v1.0/health", {}, 405),
        ("POST", f"/v1.0/user/{guest.id}/deactivate", admin.headers, 200),
    ]
    access = world.app[ACCESS_LOG]
    sink = io.StringIO()
    monkeypatch.setattr(access, "_stream", sink)
    access.flush()
    sink.truncate(0)
    ids = []
    with caplog.at_level(logging.INFO, logger="hita.access"):
        for method, path, headers, status in asked:
            response = await world.client.request(method, path, headers=headers)
            await response.read()
            assert response.status == status, (method, path)
            ids.append(response.headers["X-Request-ID"])
            assert len(ids[-1]) == 32
    lines = written(sink, access)
    assert len(lines) == len(asked)
    for (request_id, line), (method, path, _, status), sent in zip(lines, asked, ids, strict=True):
        assert re.fullmatch(rf"{method} {re.escape(path)} {status} \d+\.\dms", line)
        assert request_id == sent
    samples = await scrape(world)
    for verb, route, code, count in [
        ("GET", "/v1.0/user/{user_id}", "200", 2),  # with the first read, outside the capture
        ("GET", "/v1.0/user/{user_id}", "304", 1),
        ("GET", "/v1.0/user/{user_id}", "400", 1),
        ("GET", "/v1.0/user/{user_id}", "401", 1),
        ("GET", "/v1.0/user/{user_id}", "403", 1),
        ("GET", "unmatched", "404", 1),
        ("DELETE", "unmatched", "405", 1),
        ("POST", "/v1.0/user/{user_id}/deactivate", "200", 1),
    ]:
        labels = {"method": verb, "route": route, "status": code}
        assert value(samples, "hita_http_requests_total", **labels) == count, labels
    assert (
        value(
            samples,
            "hita_http_request_duration_seconds_count",
            method="GET",
            route="/v1.0/user/{user_id}",
        )
        == 6
    )
