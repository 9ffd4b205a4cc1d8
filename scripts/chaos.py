"""Chaos test: no read older than an acknowledged write, on any instance, under faults.

Starts its own PostgreSQL and Redis (standalone, Sentinel: master + replica +
3 sentinels, or Cluster: 3 primaries + 3 replicas; ``--topology``), two
``hita serve`` instances in the production profile, each reaching PostgreSQL
(and a standalone Redis) through fault proxies of its own, and random
concurrent reads, writes and logins sent to random instances, while a
schedule of faults runs (chaos_faults.py: Redis paused, killed, slowed, its
clients killed, failed over with its tail lost; PostgreSQL stopped, its
sessions terminated, one instance's LISTEN backend stopped or terminated;
one instance's paths blackholed, reset or delayed; a plain SQL statement over
more than 100 users; a DB gate saturated; an instance killed right after an
acknowledged write). Then the checker (chaos_history.py) finds every read
that showed data older than a write acknowledged before the read was sent,
reads PostgreSQL back to find committed writes answered 5xx, and counts
non-JSON answers, reads that fail after a failed login, and 5xx while
PostgreSQL was up and reachable from the instance that answered.

    .venv/bin/python scripts/chaos.py --minutes 20 --faults-each 5 --report docs/chaos.md
    .venv/bin/python scripts/chaos.py --topology cluster --minutes 2 --faults-each 1
    .venv/bin/python scripts/chaos.py --sweep-ms 30000 ...   # the outbox sweep slowed

Exit status 1 when the checker found anything.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import aiohttp
from argon2 import PasswordHasher

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.topologies: the Sentinel and Cluster servers

from hita.db.migrate import apply_migrations  # noqa: E402

from chaos_client import FLAG, User  # noqa: E402
from chaos_faults import Faults  # noqa: E402
from chaos_history import History  # noqa: E402
from chaos_report import RunFacts, markers, render  # noqa: E402
from chaos_workload import Workload  # noqa: E402
from chaos_world import TOPOLOGIES, World  # noqa: E402
from harness.reports import write_marked  # noqa: E402
from harness.service import mint_token, parse_settings  # noqa: E402

INSTANCES: Final = 2
ADMIN_ID: Final = "1000000000"
# Cheap password hashes (the service verifies with the parameters a hash
# carries and is told the same ones, so it never rehashes): logins cost
# little CPU on a shared machine.
ARGON2: Final = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8", "ARGON2_PARALLELISM": "1"}
TITLE: Final = "# Chaos runs\n"


def instance_settings(args: argparse.Namespace) -> dict[str, str]:
    settings = {
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "STATS_REFRESH_INTERVAL_S": "5",
        "DB_COMMAND_TIMEOUT_S": "5",
        "DB_ACQUIRE_TIMEOUT_S": "3",
        "DB_AUTO_MIGRATE": "false",
        "CACHE_L1_ENABLED": "true",
        "TRUST_X_FORWARDED_FOR": "true",  # logins come from many client addresses
        **ARGON2,
    }
    if args.sweep_ms:
        settings["CACHE_OUTBOX_SWEEP_MS"] = str(args.sweep_ms)
    return {**settings, **parse_settings(args.env)}


class Chaos:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.rng = random.Random(args.seed)
        self.world = World(root, args.topology, secrets.token_hex(32), instance_settings(args))
        self.history = History(0)
        self.t0 = 0.0  # when the clients started (monotonic)

    async def seed(self) -> tuple[list[User], str]:
        """Migrations, then an admin and ``--users`` users, each with its own password."""
        hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        ids = [f"{2000000000 + i}" for i in range(self.args.users)]
        users = [User(uid, f"guest{i}", f"chaos pw {uid}", "") for i, uid in enumerate(ids)]
        records = [(ADMIN_ID, "chaos.admin", "Chaos admin", "x", "admin")] + [
            (u.id, u.username, f"Chaos {u.username} v0", hasher.hash(u.password), "user")
            for u in users
        ]
        conn = await self.world.connect()
        try:
            await apply_migrations(conn)
            await conn.copy_records_to_table(
                "users",
                records=[(i, n, f"{n}@chaos.example", f, h, r) for i, n, f, h, r in records],
                columns=["id", "username", "email", "full_name", "password_hash", "role"],
            )
            await conn.execute("DELETE FROM cache_outbox")
        finally:
            await conn.close()
        self.history = History(len(records))
        for user in users:  # issued after the users exist, as the service issues them
            user.token = mint_token(self.world.secret, user.id, "user")
            self.history.track(
                user.id,
                full_name=f"Chaos {user.username} v0",
                points=0,
                is_active=True,
                permissions=False,
            )
        return users, mint_token(self.world.secret, ADMIN_ID, "admin")

    async def run(self) -> int:
        await self.world.start_servers()
        users, admin = await self.seed()
        await self.world.start_instances(INSTANCES)
        workload = Workload(self.world, self.history, users, admin, self.rng)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.args.clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            faults = Faults(self.world, workload, self.history, session)
            faults.lag.start()
            t0 = faults.t0 = self.t0 = time.monotonic()
            stop_at = t0 + self.args.minutes * 60
            faults_done = asyncio.Event()

            def running() -> bool:  # the planned time, and as long as the faults last
                return time.monotonic() < stop_at or not faults_done.is_set()

            workload.phase = "normal"
            clients = [
                asyncio.create_task(workload.client(session, i, running))
                for i in range(self.args.clients)
            ]
            try:
                await faults.run(self.args.faults_each, stop_at, self.args.kinds)
            finally:
                faults_done.set()
                await asyncio.gather(*clients)
                await faults.lag.close()
            elapsed = time.monotonic() - t0
        await self.audit()
        sweep = self.args.sweep_ms
        key = self.args.topology + (f"-sweep{sweep}ms" if sweep else "")
        title = self.args.topology.capitalize() + (
            f", outbox sweep every {sweep} ms" if sweep else ""
        )
        facts = RunFacts(
            command=shlex.join([".venv/bin/python", "scripts/chaos.py", *sys.argv[1:]]),
            topology=self.args.topology,
            key=key,
            title=title,
            instances=INSTANCES,
            elapsed_s=elapsed,
            t0=t0,
            faults=faults.counts,
            failed=faults.failed,
            kinds=faults.kinds(),
            log=faults.log,
        )
        text = render(self.history, facts)
        print(text)
        if self.args.report:
            begin, end = markers(key)
            write_marked(text, begin, end, Path(self.args.report), TITLE)
        return 1 if self.history.findings else 0

    async def audit(self) -> None:
        """Read PostgreSQL back: the ledger, the users created, every user's row."""
        row_of = self.history.fields
        conn = await self.world.connect()
        try:
            ledger = await conn.fetch(
                "SELECT reason, count(*) AS n FROM points_transactions"
                " WHERE reason LIKE 'chaos %' GROUP BY reason"
            )
            created = await conn.fetch("SELECT username FROM users WHERE username LIKE 'new.%'")
            final = await conn.fetch(
                "SELECT id, full_name, points, is_active, EXISTS (SELECT 1 FROM user_permissions p"
                " WHERE p.user_id = users.id AND p.permission = $2) AS permissions"
                " FROM users WHERE id = ANY($1::text[])",
                list(row_of),
                FLAG,
            )
        finally:
            await conn.close()
        rows = {r["reason"]: int(r["n"]) for r in ledger}
        rows.update({r["username"]: 1 for r in created})
        self.history.audit(rows)
        self.history.judge_read_back()
        self.history.audit_final({r["id"]: dict(r) for r in final}, time.monotonic())
        self.history.five_xx()
        self.history.failed_probes()
        if self.history.contradicted:
            await self.write_traces(sorted(self.history.contradicted))

    async def write_traces(self, user_ids: list[str]) -> None:
        """For each user whose final row contradicts the history: what the
        checker knows of it and its ledger in PostgreSQL, in the run's logs."""
        conn = await self.world.connect()
        try:
            ledger = await conn.fetch(
                "SELECT user_id, id, amount, reason, balance_after, idempotency_key, created_at"
                " FROM points_transactions WHERE user_id = ANY($1::text[]) ORDER BY id",
                user_ids,
            )
        finally:
            await conn.close()
        lines: list[str] = []
        for user_id in user_ids:
            lines += self.history.trace(user_id, self.t0)
            lines.append("  ledger (id, amount, reason, balance after, key, created at):")
            lines += [
                f"    {r['id']} {r['amount']:+d} {r['reason']!r} {r['balance_after']}"
                f" {r['idempotency_key']!r} {r['created_at'].isoformat()}"
                for r in ledger
                if r["user_id"] == user_id
            ]
        path = self.root / "contradicted.txt"
        path.write_text("\n".join(lines) + "\n")
        print(f"the users whose final row contradicts the history: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--topology", choices=TOPOLOGIES, default="standalone")
    parser.add_argument("--minutes", type=float, default=9.0)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--faults-each", type=int, default=5, help="runs of every fault kind")
    parser.add_argument(
        "--kinds",
        type=lambda text: [kind for kind in text.split(",") if kind],
        default=None,
        help="only these fault kinds, comma-separated (a partial run: the report says so)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sweep-ms", type=int, default=0, help="CACHE_OUTBOX_SWEEP_MS of the instances"
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the instances")
    parser.add_argument("--report", default=None, help="write this run's section of this file")
    args = parser.parse_args()
    (ROOT / ".hita").mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="chaos-", dir=ROOT / ".hita"))
    chaos = Chaos(args, root)

    async def run() -> int:
        try:
            return await chaos.run()
        finally:
            await chaos.world.close()

    try:
        return asyncio.run(run())
    finally:
        print(f"logs: {root}")


if __name__ == "__main__":
    raise SystemExit(main())
