"""Benchmark a cache hit in one process: HITA's read path against a raw GET and two peers.

Every variant reads one warm key holding a realistic user details document
(about 400 bytes of JSON) from the same redis-server, which the script starts
on a loopback port (or ``REDIS_URL``):

- HITA ``RedisCache.get_or_load`` and ``RedisCache.get`` (with the L1 near
  cache off and on when this HITA has ``CACHE_L1_ENABLED``);
- a raw ``redis.asyncio`` GET + ``orjson.loads`` (the floor for one round trip);
- cashews (``cache.get``, and a ``@cache`` decorated function) and aiocache
  (``RedisCache.get``, and a ``@cached`` function), each with its defaults.

Two figures per variant: microseconds per hit in a sequential loop, and hits
per second with ``--tasks`` concurrent tasks. Variants run interleaved in
``--rounds`` rounds (the order rotates every round) and each figure is the
median over the rounds, so a noisy neighbour on a shared machine spreads over
every variant alike. The table goes to docs/benchmarks.md under its own heading.

    python scripts/bench_cache.py [--rounds 9] [--calls 8000] [--tasks 50]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final, cast

import orjson
from aiocache import RedisCache as AioRedisCache
from aiocache import cached as aio_cached
from cashews import Cache as CashewsCache
from redis.asyncio import Redis

from hita.cache.client import RedisCache
from hita.cache.codec import MISS
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.cache.near import NearCache
from hita.cache.tracking import tracking_for
from hita.config import load_config
from hita.constants import REDIS_MAX_CONNECTIONS as REDIS_POOL
from hita.tasks import cancel_and_wait

from harness.bench import DOCUMENT, L1_SETTING, l1_label, l1_variants, private_redis
from harness.reports import command_line, machine_facts, publish

HEADING: Final = "Cache hit in one process (scripts/bench_cache.py)"
USER_ID: Final = str(DOCUMENT["id"])
TTL_S: Final = 600
KEYS: Final = 64  # one warm key per task, so no library can merge concurrent reads of one key
RAW: Final = "raw redis.asyncio GET + orjson.loads"
RAW_TIMED: Final = "the same, with HITA's per-call socket timeout (REDIS_SOCKET_TIMEOUT_MS)"

Call = Callable[[int], Awaitable[object]]  # the argument picks one of KEYS warm keys


@dataclasses.dataclass
class Figures:
    sequential_us: list[float] = dataclasses.field(default_factory=list)
    concurrent_per_s: list[float] = dataclasses.field(default_factory=list)


# Reads HITA could not serve from Redis (a pool wait or a command past its
# timeout on a busy machine): get_or_load then runs the loader, get answers MISS.
FALLBACKS: collections.Counter[str] = collections.Counter()


def _fallback(name: str) -> Callable[[], Awaitable[object]]:
    async def load() -> object:
        FALLBACKS[name] += 1
        return DOCUMENT

    return load


def hita_config(url: str, l1: bool | None) -> Any:
    environ = {"HITA_ENV": "development", "REDIS_URL": url, "CACHE_XFETCH_BETA": "0"}
    if l1 is not None:
        environ[L1_SETTING] = "true" if l1 else "false"
    return load_config(environ)


async def _raw(url: str, stack: AsyncExitStack, calls: dict[str, Call]) -> None:
    raw = Redis.from_url(url)
    stack.push_async_callback(raw.aclose)
    for i in range(KEYS):
        await raw.set(f"bench:raw:{i}", orjson.dumps(DOCUMENT))

    async def raw_get(i: int) -> object:
        return orjson.loads(await raw.get(f"bench:raw:{i}") or b"null")

    calls[RAW] = raw_get

    # The same read with HITA's per-call timeout: redis-py then arms an
    # asyncio timeout around every command it sends.
    timed = Redis.from_url(url, socket_timeout=hita_config(url, None).redis.socket_timeout_s)
    stack.push_async_callback(timed.aclose)

    async def timed_get(i: int) -> object:
        return orjson.loads(await timed.get(f"bench:raw:{i}") or b"null")

    calls[RAW_TIMED] = timed_get


async def _hita(url: str, l1: bool | None, stack: AsyncExitStack, calls: dict[str, Call]) -> None:
    config = hita_config(url, l1)
    cache = RedisCache(create_redis(config.redis), config.cache, KeyBuilder("bench:"))
    stack.push_async_callback(cache.aclose)
    if getattr(config.cache, "l1_enabled", False):  # as the app wires it: L1 kept by tracking
        tracking = tracking_for(
            config.redis, cache.redis, ["bench:user_details:"], cache.tracked_keys
        )
        cache.attach_near(
            NearCache(config.cache.l1_max_entries, config.cache.l1_max_bytes), tracking
        )
        task = asyncio.create_task(tracking.run_forever())
        stack.push_async_callback(cancel_and_wait, task)
        while not tracking.active:  # noqa: ASYNC110 - polling a flag, a few ms
            await asyncio.sleep(0.01)
    keys = [cache.keys.key("user_details", f"{USER_ID}{i}") for i in range(KEYS)]
    for key in keys:
        await cache.set(key, DOCUMENT, TTL_S)

    get_or_load_name = f"HITA RedisCache.get_or_load{l1_label(l1)}"
    get_name = f"HITA RedisCache.get{l1_label(l1)}"
    load = _fallback(get_or_load_name)

    async def get_or_load(i: int) -> object:
        return await cache.get_or_load(keys[i], load, ttl=TTL_S)

    async def get(i: int) -> object:
        value = await cache.get(keys[i])
        if value is MISS:
            FALLBACKS[get_name] += 1
        return value

    calls[get_or_load_name] = get_or_load
    calls[get_name] = get


async def _cashews(url: str, stack: AsyncExitStack, calls: dict[str, Call]) -> None:
    cashews = CashewsCache()
    cashews.setup(url)
    stack.push_async_callback(cashews.close)
    for i in range(KEYS):
        await cashews.set(f"bench:cashews:{i}", DOCUMENT, expire=TTL_S)

    @cashews(ttl=TTL_S, key="bench:cashews-fn:{user_id}")
    async def cashews_user(user_id: str) -> object:
        return DOCUMENT

    calls["cashews cache.get"] = lambda i: cashews.get(f"bench:cashews:{i}")
    calls["cashews @cache hit"] = lambda i: cashews_user(str(i))


async def _aiocache(url: str, stack: AsyncExitStack, calls: dict[str, Call]) -> None:
    host, port = _host_port(url)
    aio = AioRedisCache(endpoint=host, port=port, namespace="bench")
    stack.push_async_callback(aio.close)
    for i in range(KEYS):
        await aio.set(f"aiocache:{i}", DOCUMENT, ttl=TTL_S)

    async def user(user_id: str) -> object:
        return DOCUMENT

    decorate = aio_cached(
        ttl=TTL_S,
        cache=AioRedisCache,
        endpoint=host,
        port=port,
        namespace="bench-fn",
        key_builder=lambda _f, user_id: user_id,
    )
    aio_user = cast(Callable[[str], Awaitable[object]], decorate(user))
    calls["aiocache RedisCache.get"] = lambda i: aio.get(f"aiocache:{i}")
    calls["aiocache @cached hit"] = lambda i: aio_user(str(i))


@asynccontextmanager
async def variants(url: str) -> AsyncIterator[dict[str, Call]]:
    """name -> one warm hit, every client open, every key written."""
    async with AsyncExitStack() as stack:
        calls: dict[str, Call] = {}
        await _raw(url, stack, calls)
        for l1 in l1_variants():
            await _hita(url, l1, stack, calls)
        await _cashews(url, stack, calls)
        await _aiocache(url, stack, calls)
        for name, call in calls.items():  # the first pass fills the decorated functions' keys
            for i in range(KEYS):
                await call(i)
                if await call(i) != DOCUMENT:
                    raise RuntimeError(f"{name} did not return the cached document")
        if FALLBACKS:
            raise RuntimeError(f"a warm key was not served from Redis: {dict(FALLBACKS)}")
        yield calls


def _host_port(url: str) -> tuple[str, int]:
    if not url.startswith("redis://"):
        raise SystemExit("aiocache needs a redis://host:port URL (REDIS_URL)")
    hostport = url.removeprefix("redis://").split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = hostport.partition(":")
    return host, int(port or 6379)


async def sequential(call: Call, calls: int) -> float:
    started = time.perf_counter()
    for n in range(calls):
        await call(n % KEYS)
    return (time.perf_counter() - started) / calls * 1e6


async def concurrent(call: Call, calls: int, tasks: int) -> float:
    each = max(1, calls // tasks)

    async def worker(i: int) -> None:
        for _ in range(each):
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(t % KEYS) for t in range(tasks)))
    return each * tasks / (time.perf_counter() - started)


async def run(url: str, rounds: int, calls: int, tasks: int) -> dict[str, Figures]:
    async with variants(url) as table:
        figures = {name: Figures() for name in table}
        names = list(table)
        for name in names:  # warm every client's pool and code path
            await sequential(table[name], 200)
            await concurrent(table[name], 500, tasks)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                figures[name].sequential_us.append(await sequential(table[name], calls))
                figures[name].concurrent_per_s.append(await concurrent(table[name], calls, tasks))
            print(f"round {r + 1}/{rounds} done", flush=True)
        return figures


def table(figures: dict[str, Figures], tasks: int) -> list[str]:
    raw_us = statistics.median(figures[RAW].sequential_us)
    raw_rate = statistics.median(figures[RAW].concurrent_per_s)
    rows = [
        f"| variant | µs per hit, sequential | x raw GET | hits/s at {tasks} tasks | x raw GET |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, f in figures.items():
        us = statistics.median(f.sequential_us)
        rate = statistics.median(f.concurrent_per_s)
        bold = "**" if name.startswith("HITA RedisCache.get_or_load") else ""
        rows.append(
            f"| {name} | {us:.1f} | {bold}{us / raw_us:.2f}x{bold} | {rate:,.0f}"
            f" | {bold}{rate / raw_rate:.2f}x{bold} |"
        )
    return rows


def report(figures: dict[str, Figures], args: argparse.Namespace, command: str) -> str:
    l1 = (
        f"`{L1_SETTING}` exists in this HITA: both settings are measured."
        if len(l1_variants()) > 1
        else f"This HITA has no `{L1_SETTING}` setting yet: HITA's rows are its only read path."
    )
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            *machine_facts(),
            "",
            *table(figures, args.tasks),
            "",
            f"Medians over {args.rounds} interleaved rounds of {args.calls:,} hits per variant"
            f" (sequential) and {args.calls:,} hits spread over {args.tasks} tasks (concurrent),",
            "one process, one redis-server on 127.0.0.1 (TCP) started by the script"
            f" (the process pinned to CPU {CLIENT_CPU}, the server to CPU {REDIS_CPU}). The",
            "document is a user details entry of about 400 bytes; every variant is checked",
            f"to return it before the timing starts. There are {KEYS} warm keys: the sequential",
            "loop cycles through them and each concurrent task reads its own, so no library",
            "can merge concurrent reads of one key (cashews's decorator does that by default).",
            "Peers run with their defaults (cashews pickles, aiocache's RedisCache uses its",
            "JSON serializer); the decorated rows include each library's key building.",
            l1,
            "The machine is shared with other work, so read the ratios to the raw GET",
            "measured in the same rounds, not the absolute figures.",
            "HITA's plain reads share one pipelined connection (the read pipe), so its"
            " 50 tasks' reads go out together; the other libraries' take a pooled"
            " connection each. HITA reads not served from Redis during the timing (every"
            f" command has a timeout; its pool of {REDIS_POOL} connections a bounded wait):"
            f" {', '.join(f'{n}: {c:,}' for n, c in FALLBACKS.items()) or 'none'}.",
        ]
    )


CLIENT_CPU: Final = 1
REDIS_CPU: Final = 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=8000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ alone")
    args = parser.parse_args()
    # Two CPUs: the client on one, redis-server on the other, so neither waits
    # for the other's time slice and the ratios are steadier.
    pinned = (os.cpu_count() or 1) >= 2
    if pinned:
        os.sched_setaffinity(0, {CLIENT_CPU})
    with private_redis("cache-redis", REDIS_CPU if pinned else None) as url:
        figures = asyncio.run(run(url, args.rounds, args.calls, args.tasks))
    command = command_line("bench_cache.py")
    if os.environ.get("REDIS_URL"):
        command = "REDIS_URL=... " + command
    body = report(figures, args, command)
    publish(HEADING, body, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
