"""Benchmark admission control: 1,000 connections with Redis down.

A private PostgreSQL is started under ``.hita/bench-overload/`` with
``--users`` seeded users; the service runs as its own process (the production
profile, default settings) with ``REDIS_URL`` naming a port where nothing
listens, so every request's token check and read goes to PostgreSQL. ``wrk``
then holds ``--connections`` connections to 127.0.0.1 for ``--seconds``,
reading users, permissions and points histories with 200 different users'
tokens. A Lua script counts each answer by status and, for a 503, by what it
says (overloaded, or database not available) and whether ``Retry-After`` came
with it; PostgreSQL's sessions are sampled meanwhile. The result, with the
command, goes between markers into ``docs/benchmarks.md``.

    python scripts/bench_overload.py [--connections 1000] [--seconds 30]

Needs ``wrk`` (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Final

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from hita.config import PROJECT_ROOT
from hita.embedded import EmbeddedPostgres

from harness import procs, wrk
from harness.ports import free_port
from harness.reports import BENCHMARKS, command_line, write_marked
from harness.reports import facts as run_facts
from harness.service import SERVE, accounts, seeded_service
from harness.waits import wait_up

ROOT: Final = PROJECT_ROOT / ".hita" / "bench-overload"
BEGIN: Final = "<!-- overload:begin (written by scripts/bench_overload.py) -->"
END: Final = "<!-- overload:end -->"
BUDGET_S: Final = 1.0  # every answer within this
USERS: Final = 200  # whose tokens the load uses

LUA: Final = r"""
-- Filled in by bench_overload.py: request paths and their Authorization headers.
local requests = {REQUESTS}
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0; overloaded = 0; db_unavailable = 0; other_5xx = 0; other = 0; no_retry_after = 0
  counter = math.random(#requests)
end

function request()
  counter = counter % #requests + 1
  local r = requests[counter]
  return wrk.format("GET", r[1], {["Authorization"] = r[2]})
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 503 then
    if string.find(body, "overloaded", 1, true) then
      overloaded = overloaded + 1
      if headers["Retry-After"] == nil then no_retry_after = no_retry_after + 1 end
    elseif string.find(body, "Database not available", 1, true) then
      db_unavailable = db_unavailable + 1
    else
      other_5xx = other_5xx + 1
    end
  elseif status >= 500 then
    other_5xx = other_5xx + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local names = {"ok", "overloaded", "db_unavailable", "other_5xx", "other", "no_retry_after"}
  for _, name in ipairs(names) do
    local total = 0
    for _, thread in ipairs(threads) do total = total + thread:get(name) end
    io.write(string.format("COUNT %s %d\n", name, total))
  end
  io.write(string.format("LATENCY max_us %d\n", latency.max))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("LATENCY p%s_us %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("ERRORS connect %d read %d write %d timeout %d status %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status))
  io.write(string.format("TOTAL requests %d duration_us %d\n", summary.requests, summary.duration))
end
"""


def lua_script(requests: list[tuple[str, str]]) -> str:
    rows = ",\n".join(f'  {{"{path}", "{auth}"}}' for path, auth in requests)
    return LUA.replace("{REQUESTS}", "{\n" + rows + "\n}")


def closed_port() -> int:
    """A port where nothing listens: Redis is down for the whole run."""
    return free_port()


async def sample_postgres(pg_url: str, stop: asyncio.Event) -> dict[str, int]:
    """Most sessions and most active queries seen (every 200 ms)."""
    most = {"sessions": 0, "active": 0}
    conn = await asyncpg.connect(pg_url)
    try:
        while not stop.is_set():
            row = await conn.fetchrow(
                "SELECT count(*) AS sessions, count(*) FILTER (WHERE state = 'active') AS active"
                " FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert row is not None
            most = {k: max(most[k], int(row[k])) for k in most}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await conn.close()
    return most


async def scrape(base_url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/metrics") as response:
        text = await response.text()
    wanted: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hita_overload_refusals_total":
                wanted[f"refused: {sample.labels['reason']}"] = sample.value
            elif sample.name == "hita_http_requests_total":
                key = f"status {sample.labels['status']}"
                wanted[key] = wanted.get(key, 0) + sample.value
            elif sample.name in ("hita_http_in_flight_peak", "hita_db_queue_waits_total"):
                wanted[sample.name] = sample.value
    return wanted


async def run_wrk(argv: list[str], pg_url: str) -> tuple[str, dict[str, int]]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_postgres(pg_url, stop))
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    stop.set()
    return output.decode(), await sampler


def parse(output: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] in ("COUNT", "LATENCY", "TOTAL") and len(parts) >= 3:
            for name, value in zip(parts[1::2], parts[2::2], strict=False):
                values[name] = int(value)
        elif parts and parts[0] == "ERRORS":
            for name, value in zip(parts[1::2], parts[2::2], strict=False):
                values[f"errors_{name}"] = int(value)
    return values


def section(
    command: str, facts: dict[str, str], v: dict[str, int], metrics: dict[str, float]
) -> str:
    answered = sum(
        v.get(k, 0) for k in ("ok", "overloaded", "db_unavailable", "other_5xx", "other")
    )
    errors = {k.removeprefix("errors_"): n for k, n in v.items() if k.startswith("errors_") and n}
    met = (
        v["max_us"] <= BUDGET_S * 1e6
        and v.get("db_unavailable", 0) == 0
        and v.get("other_5xx", 0) == 0
        and v.get("no_retry_after", 0) == 0
        and not {k for k in errors if k != "status"}
    )
    lines = [
        BEGIN,
        "",
        "## Admission control: 1,000 connections with Redis down",
        "",
        "Written by `scripts/bench_overload.py`; rerun it to refresh. Redis is down"
        " for the whole run (its URL names a port where nothing listens), so every"
        " token check and every read goes to PostgreSQL; the service runs with its"
        " default bounds (`HTTP_MAX_IN_FLIGHT`, `DB_POOL_MAX_SIZE`, `DB_QUEUE_MAX`,"
        " `DB_QUEUE_TIMEOUT_MS`, `OVERLOAD_PACE_MS`). wrk ignores `Retry-After` and sends"
        " its next request at once: the service reads it `OVERLOAD_PACE_MS` (500 ms) later,"
        " which is most of the median below. Without admission control (the commit before it): 618"
        ' answers "database unavailable: TimeoutError" after 3 s waits for a pool'
        " connection while PostgreSQL had 0 to 1 active queries, p99 3.8 s.",
        "",
        f"Command: `{command}`",
        "",
        *(f"- {k}: {n}" for k, n in facts.items()),
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| answers | {answered:,} ({answered / (v['duration_us'] / 1e6):,.0f}/s) |",
        f"| 200 | {v.get('ok', 0):,} |",
        f"| 503 overloaded (all with `Retry-After`: {v.get('no_retry_after', 0) == 0}) |"
        f" {v.get('overloaded', 0):,} |",
        f'| 503 "Database not available" | {v.get("db_unavailable", 0):,} |',
        f"| other 5xx | {v.get('other_5xx', 0):,} |",
        f"| other statuses | {v.get('other', 0):,} |",
        f"| latency p50 / p90 / p99 / p99.9 (ms) | {v['p50_us'] / 1000:.0f} /"
        f" {v['p90_us'] / 1000:.0f} / {v['p99_us'] / 1000:.0f} / {v['p99.9_us'] / 1000:.0f} |",
        f"| latency max (ms) | **{v['max_us'] / 1000:.0f}** |",
        f"| wrk socket errors | {errors or 'none'} |",
        *(f"| service: {k} | {n:,.0f} |" for k, n in sorted(metrics.items())),
        "",
        f"Every answer within {BUDGET_S:g} s, each 200 or 503 overloaded with"
        f' `Retry-After`, none "Database not available": **{"met" if met else "NOT met"}**.',
        "",
        END,
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the service")
    parser.add_argument("--no-report", action="store_true", help="print only; leave docs alone")
    args = parser.parse_args()
    if not wrk.available():
        return 2

    root = ROOT / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True)
    postgres = EmbeddedPostgres(root / "postgres", database="hita_overload", durable=False)
    server: subprocess.Popen[bytes] | None = None
    try:
        postgres.start()
        postgres.create_database("hita_overload", drop_first=True)
        port = free_port()
        env, secret = seeded_service(
            database_url=postgres.url,
            redis_url=f"redis://127.0.0.1:{closed_port()}/0",
            data_dir=root,
            port=port,
            env_items=args.env,
            users=args.users,
        )
        server = procs.start(SERVE, env, root / "service.log")
        base_url = f"http://127.0.0.1:{port}"
        wait_up(f"{base_url}/v1.0/health", child=server)
        _, users, _ = asyncio.run(accounts(postgres.url, secret, USERS))
        requests = []
        for user_id, token in users:
            auth = f"Bearer {token}"
            for path in (f"/v1.0/user/{user_id}", f"/v1.0/permissions/{user_id}"):
                requests.append((path, auth))
            requests.append((f"/v1.0/points/{user_id}/history", auth))
        script = root / "bench.lua"
        script.write_text(lua_script(requests))
        argv = wrk.command(
            base_url,
            connections=args.connections,
            seconds=args.seconds,
            threads=args.threads,
            script=script,
            extra=["--timeout", "10s"],
        )
        print(" ".join(argv), flush=True)
        started = time.monotonic()
        output, most = asyncio.run(run_wrk(argv, postgres.url))
        print(output)
        values = parse(output)
        if "max_us" not in values:
            raise RuntimeError("wrk gave no figures; see its output above")
        metrics = asyncio.run(scrape(base_url))
        log_text = (root / "service.log").read_text(errors="replace")
        facts = {
            **run_facts(),
            "load": f"wrk, {args.threads} threads, {args.connections} connections,"
            f" {args.seconds} s ({time.monotonic() - started:.0f} s with start-up),"
            f" 600 GET paths of 200 users",
            "PostgreSQL while loaded": f"at most {most['sessions']} sessions,"
            f" at most {most['active']} active queries at once",
            "service log": f"{log_text.count(' ERROR ')} ERROR lines",
        }
        text = section(command_line("bench_overload.py"), facts, values, metrics)
        print(text)
        if not args.no_report:
            write_marked(text, BEGIN, END, BENCHMARKS, "# Benchmarks\n")
            print(f"written to {BENCHMARKS.relative_to(PROJECT_ROOT)}")
    finally:
        if server is not None:
            procs.stop(server)
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
