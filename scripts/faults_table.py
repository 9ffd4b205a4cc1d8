"""Ordinary events under partial faults, tried from outside as a client would.

One ``hita serve`` (production profile) on a PostgreSQL and a Redis this
script owns (by PID), seeded with realistic users; each row is an event the
chaos run does not make on purpose, measured over HTTP:

1. PostgreSQL stopped: 30 warm reads, one failed login, the same 30 reads;
   Redis's ``user_details`` keys before and after the login.
2. Redis paused and the PostgreSQL pool at 2 connections: 20 concurrent point
   additions; every answer's status and type against the ledger rows committed.
3. 40 wrong passwords for one username at once.
4. Redis paused: logins and renames one after another, p50 and p99.
5. An idle service: 50 concurrent redeems of 10 points on a balance of 100.

    .venv/bin/python scripts/faults_table.py --report docs/chaos.md   (make faults)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
from redis.asyncio import Redis

from hita.embedded import EmbeddedPostgres, EmbeddedRedis

from harness import procs
from harness.ports import free_port
from harness.reports import command_line, facts, write_marked
from harness.service import SERVE, accounts, seeded_service
from harness.waits import until_up

USERS: Final = 300
WARM_READS: Final = 30
ADDS: Final = 20
WRONG_PASSWORDS: Final = 40
TIMED: Final = 40  # logins and renames timed while Redis is paused
REDEEMS: Final = 50
LEASE_PAST_S: Final = 2.0  # past a reader lease (1.5 s): the instance no longer trusts Redis
BEGIN: Final = "<!-- faults-table:begin (written by scripts/faults_table.py) -->"
END: Final = "<!-- faults-table:end -->"


@dataclass
class Service:
    base: str
    admin: dict[str, str]
    users: list[tuple[str, dict[str, str]]]  # id, auth headers
    http: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, str, float]:
        """Status, content type and seconds of one request."""
        started = time.perf_counter()
        async with self.http.request(method, self.base + path, headers=headers, **kw) as response:
            await response.read()
            return response.status, response.content_type, time.perf_counter() - started


def counted(answers: list[tuple[int, str, float]]) -> str:
    """``30 x 200``, ``19 x 503 + 1 x 500 text/plain``..."""
    tally = Counter((status, kind) for status, kind, _ in answers)
    return " + ".join(
        f"{n} x {status}" + ("" if kind == "application/json" else f" {kind}")
        for (status, kind), n in sorted(tally.items())
    )


def p99(seconds: list[float]) -> float:
    """Milliseconds, interpolated between the samples (``inclusive``: never past
    the slowest one; the default ``exclusive`` method extrapolates beyond it
    for 40 samples, and reported 424 ms for a slowest request of 280 ms)."""
    if len(seconds) < 2:
        return 0.0
    return statistics.quantiles(seconds, n=100, method="inclusive")[98] * 1000


async def details_keys(redis_url: str) -> int:
    redis = Redis.from_url(redis_url)
    try:
        return len([k async for k in redis.scan_iter(match="user_details:*", count=1000)])
    finally:
        await redis.aclose()


async def row_postgres_stopped(svc: Service, postgres: EmbeddedPostgres, redis_url: str) -> str:
    reads = [f"/v1.0/user/{uid}" for uid, _ in svc.users[:WARM_READS]]
    for path in reads:
        await svc.call("GET", path, svc.admin)  # warm: Redis and L1 hold them
    postgres.stop()
    try:
        await asyncio.sleep(LEASE_PAST_S)  # the lease gone too: reads are PostgreSQL's or Redis's
        before = [await svc.call("GET", p, svc.admin) for p in reads]
        keys_before = await details_keys(redis_url)
        login = await svc.call(
            "POST", "/v1.0/auth/login", json={"username": "anyone", "password": "any password"}
        )
        keys_after = await details_keys(redis_url)
        after = [await svc.call("GET", p, svc.admin) for p in reads]
    finally:
        postgres.start()
    same = [a[:2] for a in after] == [b[:2] for b in before]
    return (
        f"| PostgreSQL stopped; {WARM_READS} warm `GET /v1.0/user/{{id}}` | {counted(before)} |\n"
        f"| then one `POST /v1.0/auth/login` | {counted([login])}; `user_details` keys"
        f" {keys_before} → **{keys_after}** |\n"
        f"| the same {WARM_READS} reads again | {counted(after)}"
        f" ({'the same answers' if same else '**not the same answers**'}) |\n"
    )


async def row_saturated_adds(
    svc: Service, redis: EmbeddedRedis, database_url: str
) -> tuple[str, list[tuple[int, str, float]]]:
    target = svc.users[0][0]
    before = await ledger_rows(database_url, target)
    redis.process.pause()
    try:
        answers = await asyncio.gather(
            *(
                svc.call(
                    "POST",
                    f"/v1.0/points/{target}/add",
                    svc.admin,
                    json={"amount": 1, "reason": "faults table"},
                )
                for _ in range(ADDS)
            )
        )
    finally:
        redis.process.resume()
    committed = await ledger_rows(database_url, target) - before
    ok = sum(1 for status, _, _ in answers if 200 <= status < 300)
    line = (
        f"| Redis paused, DB pool of 2; {ADDS} `POST /points/{{id}}/add` at once |"
        f" {counted(answers)}; ledger rows committed **{committed}**, 2xx answers **{ok}** |\n"
    )
    return line, answers


async def ledger_rows(database_url: str, user_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM points_transactions WHERE user_id = $1", user_id
            )
        )
    finally:
        await conn.close()


async def row_parallel_wrong_passwords(svc: Service, username: str) -> str:
    answers = await asyncio.gather(
        *(
            svc.call("POST", "/v1.0/auth/login", json={"username": username, "password": "wrong"})
            for _ in range(WRONG_PASSWORDS)
        )
    )
    event = f"{WRONG_PASSWORDS} parallel wrong passwords for one username (limit 5)"
    return f"| {event} | {counted(answers)} |\n"


async def timed(svc: Service, logins: list[tuple[str, str]], tag: str) -> tuple[list[float], ...]:
    """Seconds of ``TIMED`` logins and ``TIMED`` renames, one after another."""
    login_s, write_s = [], []
    for n in range(TIMED):
        username, password = logins[n % len(logins)]
        _, _, took = await svc.call(
            "POST", "/v1.0/auth/login", json={"username": username, "password": password}
        )
        login_s.append(took)
        uid = svc.users[1 + n % (len(svc.users) - 1)][0]
        _, _, took = await svc.call(
            "PATCH", f"/v1.0/user/update/{uid}", svc.admin, json={"full_name": f"{tag} {n}"}
        )
        write_s.append(took)
    return login_s, write_s


def latency_cells(login_s: list[float], write_s: list[float]) -> str:
    return "; ".join(
        f"{what} p50 {statistics.median(s) * 1000:.0f} ms, p99 **{p99(s):.0f} ms**,"
        f" slowest {max(s) * 1000:.0f} ms"
        for what, s in (("login", login_s), ("PATCH", write_s))
    )


async def row_timed_while_paused(
    svc: Service, redis: EmbeddedRedis, logins: list[tuple[str, str]]
) -> str:
    healthy = await timed(svc, logins, "Healthy")
    redis.process.pause()
    try:
        paused = await timed(svc, logins, "Paused")
    finally:
        redis.process.resume()
    return (
        f"| Redis healthy: {TIMED} logins and {TIMED} PATCHes, one after another"
        f" (reference) | {latency_cells(*healthy)} |\n"
        f"| Redis paused: {TIMED} logins and {TIMED} PATCHes, one after another |"
        f" {latency_cells(*paused)} |\n"
    )


async def row_redeems(svc: Service, database_url: str) -> str:
    uid, headers = svc.users[-1]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE users SET points = 100 WHERE id = $1", uid)
    finally:
        await conn.close()
    await asyncio.sleep(0.5)  # the change taken in by the instance
    answers = await asyncio.gather(
        *(
            svc.call(
                "POST", f"/v1.0/points/{uid}/redeem", headers, json={"amount": 10, "reason": "rush"}
            )
            for _ in range(REDEEMS)
        )
    )
    event = f"{REDEEMS} concurrent redeems of 10 on a balance of 100, idle service"
    return f"| {event} | {counted(answers)} |\n"


async def with_service(
    env: dict[str, str],
    port: int,
    log: Path,
    run: Callable[[Service], Awaitable[str]],
    *,
    secret: str,
    database_url: str,
) -> str:
    child = procs.start(SERVE, env, log)
    try:
        await until_up(f"http://127.0.0.1:{port}/v1.0/health", child=child)
        admin_token, users, _ = await accounts(database_url, secret, with_tokens=60)
        async with aiohttp.ClientSession() as http:
            svc = Service(
                f"http://127.0.0.1:{port}",
                {"Authorization": f"Bearer {admin_token}"},
                [(uid, {"Authorization": f"Bearer {token}"}) for uid, token in users],
                http,
            )
            return await run(svc)
    finally:
        procs.stop(child)


async def main_async(args: argparse.Namespace) -> int:
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hita-faults-") as tmp:
        root = Path(tmp)
        postgres = EmbeddedPostgres(root / "postgres", database="hita_faults", durable=False)
        redis = EmbeddedRedis(root / "redis")
        postgres.start()
        redis.start()
        try:
            port = free_port()
            env, secret = await asyncio.to_thread(
                seeded_service,
                database_url=postgres.url,
                redis_url=redis.url,
                data_dir=root / "data",
                port=port,
                env_items=[],
                users=USERS,
            )

            async def faults(svc: Service) -> str:
                logins = await make_logins(svc, 4)
                first = await row_postgres_stopped(svc, postgres, redis.url)
                await until_up(f"{svc.base}/v1.0/health", timeout_s=30)
                wrong = await row_parallel_wrong_passwords(svc, logins[0][0])
                timed = await row_timed_while_paused(svc, redis, logins[1:])
                redeems = await row_redeems(svc, postgres.url)
                return first + wrong + timed + redeems

            log = root / "serve.log"
            urls = {"secret": secret, "database_url": postgres.url}
            rows.append(await with_service(env, port, log, faults, **urls))

            async def saturated(svc: Service) -> str:
                line, _ = await row_saturated_adds(svc, redis, postgres.url)
                return line

            small = {**env, "DB_POOL_MAX_SIZE": "2", "DB_POOL_MIN_SIZE": "1"}
            log = root / "serve-small-pool.log"
            rows.insert(1, await with_service(small, port, log, saturated, **urls))
        finally:
            redis.stop()
            postgres.stop()
    table = "| tried from outside | result |\n| --- | --- |\n" + "".join(rows)
    print(table)
    if args.report:
        when = ", ".join(f"{k} {v}" for k, v in facts().items())
        text = (
            f"{BEGIN}\n\n## Ordinary events under partial faults, from outside\n\n"
            f"Command: `{command_line('faults_table.py')}` ({when}). One instance, production"
            f" profile, {USERS} seeded users, its own PostgreSQL and Redis.\n\n{table}\n{END}\n"
        )
        write_marked(text, BEGIN, END, Path(args.report))
    return 0


async def make_logins(svc: Service, count: int) -> list[tuple[str, str]]:
    """Users made through the API with passwords this script knows."""
    made = []
    for n in range(count):
        username, password = f"faults.login{n}", f"faults password {n}"
        body = {
            "username": username,
            "email": f"{username}@hotel.example",
            "full_name": f"Faults Login {n}",
            "password": password,
        }
        status, _, _ = await svc.call("POST", "/v1.0/user/create", svc.admin, json=body)
        if status != 201:
            raise RuntimeError(f"creating {username} answered {status}")
        made.append((username, password))
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default=None, help="write the table into this file")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
