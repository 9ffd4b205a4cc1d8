"""Benchmark the small parts of a request that issue 10 (item 5) changed, in one process
(and since, the access line's write: issue 19).

Each row times the part as it was before the change (kept here, verbatim, as
the reference) and as it is now, with ``timeit``: medians of 9 repeats of
5,000 calls, both sides in the same process a moment apart, so the ratio holds
on a busy machine even when the microseconds do not. The ETag row has no
"before": it is new work each cached read now does.

    python scripts/bench_parts.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import time
import timeit
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from yarl import URL

from hita.api.access_log import BUFFER_LINES, AccessLog
from hita.api.etag import etag_of
from hita.api.responses import json_ok
from hita.cache.client import RedisCache
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.config import load_config
from hita.logs import setup_logging, skip_unused_record_fields
from hita.metrics import LATENCY_BUCKETS_S, Metrics

from harness.bench import DOCUMENT, private_redis
from harness.reports import machine_facts, publish

HEADING: Final = "Parts of a request, before and after (scripts/bench_parts.py)"
_DUMPS_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
ROUTE: Final = "/v1.0/user/{user_id}"


def _dumps(data: Any) -> str:
    return orjson.dumps(data, option=_DUMPS_OPTIONS).decode()


def json_ok_before(body: Mapping[str, Any]) -> web.Response:
    return web.json_response({"success": True, **body}, dumps=_dumps)


class MetricsBefore:
    """prometheus_client's Counter and Histogram, ``labels()`` on every request."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.http_requests = Counter(
            "hita_http_requests", "requests", ["method", "route", "status"], registry=registry
        )
        self.http_latency = Histogram(
            "hita_http_request_duration_seconds",
            "latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(method, route).observe(seconds)


def median_us(fn: Callable[[], object], number: int = 5000, repeat: int = 9) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def rows() -> list[str]:
    before_metrics, after_metrics = MetricsBefore(), Metrics()
    body = {"user": DOCUMENT}
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "request id (`uuid4().hex` -> `os.urandom(16).hex()`)": (
            lambda: uuid.uuid4().hex,
            lambda: os.urandom(16).hex(),
        ),
        "Prometheus, per request (`labels()` each time -> plain-number collector)": (
            lambda: before_metrics.observe_request("GET", ROUTE, 200, 0.001),
            lambda: after_metrics.observe_request("GET", ROUTE, 200, 0.001),
        ),
        "JSON response (`web.json_response(dumps=...)` -> orjson bytes)": (
            lambda: json_ok_before(body),
            lambda: json_ok(body),
        ),
    }
    found = []
    for name, (before, after) in pairs.items():
        b, a = median_us(before), median_us(after)
        found.append(f"| {name} | {b:.2f} | {a:.2f} | {a / b:.2f}x |")

    saved = sys.stderr
    with open(os.devnull, "w") as sink:
        sys.stderr = sink
        try:
            setup_logging("INFO", "json")
            log = logging.getLogger("hita.access")

            def line() -> None:
                log.info("%s %s %d %.1fms", "GET", "/v1.0/user/1234567890", 200, 1.234)

            b = median_us(line)
            skip_unused_record_fields()
            a = median_us(line)
        finally:
            sys.stderr = saved
    found.append(
        f"| JSON access log line, to /dev/null (caller, thread and process fields skipped)"
        f" | {b:.2f} | {a:.2f} | {a / b:.2f}x |"
    )
    with open(os.devnull, "w") as sink:
        found += asyncio.run(access_lines(sink, line))
    encoded = json_ok(body).body
    assert isinstance(encoded, bytes)
    found.append(
        f"| ETag of a user answer ({len(encoded)} bytes, BLAKE2b-128): new work | -"
        f" | {median_us(lambda: etag_of(encoded)):.2f} | - |"
    )
    return found


async def access_lines(sink: TextIO, through_logging: Callable[[], None]) -> list[str]:
    """The access line through ``logging`` (the skipped fields above) against
    ``AccessLog``, each format, to /dev/null; ``AccessLog`` writes once per
    turn of the loop, here once per 20 lines (a loop turn under 50 connections
    serves about that many)."""
    rows = []
    for fmt in ("json", "text"):
        saved = sys.stderr
        sys.stderr = sink
        try:
            setup_logging("INFO", fmt)
            before = median_us(through_logging)
        finally:
            sys.stderr = saved
        access = AccessLog(sink, fmt)

        def twenty(access: AccessLog = access) -> None:
            for _ in range(20):
                access.line("GET", "/v1.0/user/1234567890", 200, 0.001234, "0" * 32)
            access.flush()

        after = median_us(twenty, number=250) / 20
        rows.append(
            f"| access line, {fmt}: `logging` -> `AccessLog` (formatted here, one write"
            f" a loop turn) | {before:.2f} | {after:.2f} | {after / before:.2f}x |"
        )
    rows += access_flush(sink)
    return rows


class AccessLogBefore(AccessLog):
    """``AccessLog`` as it was before 2026-12-06, kept as the reference: a
    request kept its fields (its URL too), all formatted at the write."""

    def __init__(self, stream: TextIO, fmt: str) -> None:
        super().__init__(stream, fmt)
        self._kept: list[tuple[float, str, str | URL, int, float, str]] = []

    def line(self, method: str, path: str | URL, status: int, seconds: float, rid: str) -> None:
        self._kept.append((time.time(), method, path, status, seconds, rid))

    def flush(self) -> None:
        kept, self._kept = self._kept, []
        self._stream.write("\n".join([self._text(fields) for fields in kept]) + "\n")
        self._stream.flush()


def access_flush(sink: TextIO) -> list[str]:
    """The write of a full buffer (``BUFFER_LINES`` lines), which the event
    loop waits out: every request in flight waits with it. The requests'
    URLs are new objects, as aiohttp makes them (nothing decoded yet)."""
    paths = [f"/v1.0/user/{uuid.uuid4()}" for _ in range(BUFFER_LINES)]
    rows = []
    for fmt in ("json", "text"):
        before = AccessLogBefore(sink, fmt)
        after = AccessLog(sink, fmt, buffer_lines=BUFFER_LINES + 1)  # written below, not by line()
        stalls: dict[str, list[float]] = {"before": [], "after": []}
        totals: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(15):
            for name, access in (("before", before), ("after", after)):
                urls = [URL.build(path=path, encoded=True) for path in paths]
                started = time.perf_counter()
                for url in urls:
                    access.line("GET", url, 200, 0.001234, "0" * 32)
                flushed = time.perf_counter()
                access.flush()
                done = time.perf_counter()
                stalls[name].append((done - flushed) * 1e3)
                totals[name].append((done - started) / BUFFER_LINES * 1e6)
        b, a = statistics.median(stalls["before"]), statistics.median(stalls["after"])
        rows.append(
            f"| access lines, {fmt}: the write of {BUFFER_LINES:,} (a full buffer), the loop"
            f" waiting, **ms**: formatted at the write -> as each request ends"
            f" | {b:.2f} | {a:.2f} | {a / b:.2f}x |"
        )
        b, a = statistics.median(totals["before"]), statistics.median(totals["after"])
        rows.append(
            f"| access line, {fmt}: line and write together, per line: formatted at the"
            f" write -> as each request ends | {b:.2f} | {a:.2f} | {a / b:.2f}x |"
        )
    return rows


READS: Final = 2_000  # sequential GETs per repeat


async def shortcut_get(redis: Any, key: str) -> Any:
    """The cache's former read path, kept here as the reference: a pooled
    connection, the packed command, its reply, around redis-py's wrapper."""
    pool = redis.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(connection.pack_command("GET", key))
        return await connection.read_response()
    finally:
        await pool.release(connection)


async def redis_reads(url: str) -> list[str]:
    """A GET of a stored user through the former shortcut against the cache's
    read path now (``CacheCore._read_command``: redis-py's ``execute_command``),
    in client CPU per GET (``process_time``: the round trip's waiting does not
    count, Redis is another process)."""
    config = load_config({"HITA_ENV": "test", "REDIS_URL": url})
    cache = RedisCache(create_redis(config.redis), config.cache, KeyBuilder("bench:"))
    redis = cache._redis
    await redis.set("bench:parts", orjson.dumps(DOCUMENT))

    async def cpu_us(read: Callable[[], Any]) -> float:
        started = time.process_time()
        for _ in range(READS):
            await read()
        return (time.process_time() - started) / READS * 1e6

    def before() -> Any:
        return shortcut_get(redis, "bench:parts")

    def now() -> Any:
        return cache._read_command("GET", "bench:parts")

    befores, afters = [], []
    for _ in range(9):
        befores.append(await cpu_us(before))
        afters.append(await cpu_us(now))
    await cache.aclose()
    low, high = statistics.median(befores), statistics.median(afters)
    return [
        f"| a GET: the former pooled-connection shortcut -> redis-py `execute_command`"
        f" (the cache's read path now), client CPU | {low:.2f} | {high:.2f}"
        f" | {high / low:.2f}x |"
    ]


def main() -> int:
    with private_redis("parts-redis") as url:
        reads = asyncio.run(redis_reads(url))
    body = "\n".join(
        [
            "Command: `python scripts/bench_parts.py`",
            "",
            *machine_facts(),
            "",
            "| part | before (µs) | after (µs) | after / before |",
            "| --- | ---: | ---: | ---: |",
            *rows(),
            *reads,
            "",
            "Medians of 9 repeats of 5,000 calls each, before and after in one process. The",
            "machine is shared: the µs are inflated by other work, the ratios hold. The GET",
            "row: medians of 9 repeats of 2,000 sequential GETs to a private Redis each way.",
            f"The rows of the write of {BUFFER_LINES:,} access lines: medians of 15 writes each",
            "way, alternating, of lines whose requests' URLs are new objects.",
        ]
    )
    publish(HEADING, body, write="--no-write" not in sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
