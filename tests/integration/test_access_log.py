"""One access line per request, unless ACCESS_LOG is off; metrics either way."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.config import Config


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_access_line_follows_the_setting(
    aiohttp_client: AiohttpClient,
    config: Config,
    caplog: pytest.LogCaptureFixture,
    enabled: bool,
) -> None:
    http = dataclasses.replace(config.http, access_log=enabled)
    client = await aiohttp_client(create_app(dataclasses.replace(config, http=http)))
    with caplog.at_level(logging.INFO, logger="hita.access"):
        for _ in range(3):
            response = await client.get("/v1.0/health")
            assert response.status == 200
            assert len(response.headers["X-Request-ID"]) == 32
    lines = [r.getMessage() for r in caplog.records if r.name == "hita.access"]
    assert len(lines) == (3 if enabled else 0)
    assert all(line.startswith("GET /v1.0/health 200 ") for line in lines)
    metrics = await (await client.get("/metrics")).text()
    assert 'hita_http_requests_total{method="GET",route="/v1.0/health",status="200"} 3.0' in metrics
