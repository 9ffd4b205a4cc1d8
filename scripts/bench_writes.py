"""What the consistency protocol costs: user updates and cached reads, before and after.

Runs one ``hita serve`` (production profile) from each source tree given with
``--tree`` (e.g. a worktree of the commit before the protocol, and this
checkout), with each ``--variant`` of settings, on a PostgreSQL and a Redis
of ``--topology`` the script starts, and measures, in interleaved rounds:
PATCH of a user's name (writes/s, p50, p99) and GET of a user's details with
an admin token (reads/s, p50, p99), each for a fixed time at a fixed
concurrency. Medians over rounds; all traffic to 127.0.0.1.

    git worktree add /tmp/hita-before <commit>
    .venv/bin/python scripts/bench_writes.py --tree /tmp/hita-before --tree . \\
        --seconds 8 --rounds 3 --report docs/benchmarks.md   (what `make bench-writes` runs)
    .venv/bin/python scripts/bench_writes.py --tree . --topology sentinel \\
        --variant wait: --variant no-wait:CACHE_REPLICA_WAIT_MS=0
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

from hita.config import PROJECT_ROOT as ROOT
from hita.embedded import EmbeddedPostgres

sys.path.insert(0, str(ROOT))  # tests.topologies: the Sentinel and Cluster servers

from chaos_world import TOPOLOGIES, Redises
from harness import procs
from harness.ports import free_port
from harness.reports import command_line, facts, write_section
from harness.service import SERVE, mint_token, parse_settings, service_env
from harness.waits import until_up

SECRET = secrets.token_hex(32)
USERS = 1_000
HEADING = "What the consistency protocol costs (scripts/bench_writes.py)"


async def reset(database_url: str) -> None:
    """An empty schema: the tree under test applies its own migrations."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def fill(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        ids = [f"{3000000000 + i}" for i in range(USERS)]
        await conn.copy_records_to_table(
            "users",
            records=[
                (uid, f"bench{i}", f"bench{i}@bench.example", "Bench", "x", "user")
                for i, uid in enumerate(ids)
            ]
            + [("1000000000", "bench.admin", "admin@bench.example", "Admin", "x", "admin")],
            columns=["id", "username", "email", "full_name", "password_hash", "role"],
        )
        return ids
    finally:
        await conn.close()


def serve(tree: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``hita serve`` from ``tree`` (with its own .venv if it has one)."""
    python = tree / ".venv" / "bin" / "python"
    argv = [str(python if python.exists() else sys.executable), *SERVE[1:]]
    return procs.start(argv, {**env, "PYTHONPATH": str(tree)}, log, cwd=tree)


async def load(
    base: str, ids: list[str], kind: str, seconds: float, concurrency: int
) -> tuple[float, float, float]:
    headers = {"Authorization": f"Bearer {mint_token(SECRET, '1000000000', 'admin')}"}
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    counter = 0

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal counter
        n = offset
        while time.monotonic() < stop:
            uid = ids[n % len(ids)]
            n += concurrency
            started = time.perf_counter()
            if kind == "write":
                counter += 1
                request = session.patch(
                    f"{base}/v1.0/user/update/{uid}",
                    json={"full_name": f"Bench {counter}"},
                    headers=headers,
                )
            else:
                request = session.get(f"{base}/v1.0/user/{uid}", headers=headers)
            async with request as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{kind}: {response.status}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.monotonic()
        await asyncio.gather(*(worker(session, i) for i in range(concurrency)))
        elapsed = time.monotonic() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def variants(given: list[str]) -> dict[str, dict[str, str]]:
    """``label:KEY=VALUE,KEY=VALUE`` each; none given: one with no setting."""
    out: dict[str, dict[str, str]] = {}
    for text in given or ["default:"]:
        label, _, pairs = text.partition(":")
        out[label] = parse_settings([p for p in pairs.split(",") if p])
    return out


async def main_async(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="bench-writes-", dir=ROOT / ".hita"))
    postgres = EmbeddedPostgres(root / "pg", database="bench", durable=False)
    redises = Redises(args.topology, root)
    postgres.start()
    await asyncio.to_thread(redises.start)
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    standalone = redises.standalone
    try:
        env = service_env(
            database_url=postgres.url,
            redis_url=standalone.url if standalone is not None else None,
            data_dir=root / "data",
            secret=SECRET,
            settings={
                "LOG_LEVEL": "ERROR",
                "DB_AUTO_MIGRATE": "true",
                "STATS_REFRESH_ENABLED": "false",
                "WARMUP_ON_START": "false",
                **({} if standalone is not None else redises.settings(None)),
            },
        )
        trees = [Path(t).resolve() for t in args.tree]  # noqa: ASYNC240 - before any load
        runs = [(t, label, extra) for t in trees for label, extra in variants(args.variant).items()]
        for round_ in range(args.rounds):
            for tree, label, extra in runs:
                await reset(postgres.url)
                port = free_port()
                proc = serve(tree, {**env, **extra, "PORT": str(port)}, root / "serve.log")
                base = f"http://127.0.0.1:{port}"
                try:
                    await until_up(f"{base}/v1.0/health", child=proc)
                    ids = await fill(postgres.url)
                    await load(base, ids, "read", 2, args.concurrency)  # warm the cache
                    for kind in ("write", "read"):
                        figure = await load(base, ids, kind, args.seconds, args.concurrency)
                        results.setdefault((f"{tree.name} {label}", kind), []).append(figure)
                        print(
                            f"round {round_ + 1} {tree} {label} {kind}: {figure[0]:.0f}/s"
                            f" p50 {figure[1]:.1f} ms p99 {figure[2]:.1f} ms",
                            flush=True,
                        )
                finally:
                    procs.stop(proc, signal.SIGINT)
    finally:
        await asyncio.to_thread(redises.stop)
        postgres.stop()
    lines = [
        f"| tree, variant ({args.topology}) | operation | req/s (median) | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for (run, kind), figures in results.items():
        lines.append(
            f"| `{run}` | {'PATCH user' if kind == 'write' else 'GET user'} |"
            f" {statistics.median(f[0] for f in figures):,.0f} |"
            f" {statistics.median(f[1] for f in figures):.1f} |"
            f" {statistics.median(f[2] for f in figures):.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.report:
        when = ", ".join(f"{k} {v}" for k, v in facts().items())
        body = (
            f"Command: `{command_line('bench_writes.py')}` ({when}; trees: "
            + ", ".join(f"`{Path(t).name}` = {Path(t)}" for t in args.tree)
            + f"). PATCH and GET at concurrency {args.concurrency}, {args.seconds:g} s"
            f" each, medians of {args.rounds} interleaved rounds.\n\n{table}\n"
        )
        await asyncio.to_thread(write_section, HEADING, body, Path(args.report))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="a HITA source tree")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="standalone")
    parser.add_argument(
        "--variant", action="append", default=[], help="label:KEY=VALUE,... settings of a run"
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--report", default=None)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
