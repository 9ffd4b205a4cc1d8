"""``RedisCache``: the seed's cache manager, made correct under concurrency and outages.

Every Redis call goes through ``_call``, the one boundary where driver errors
are caught: an outage (refused, reset, timed out) counts against the circuit
breaker and turns into a miss or a no-op, so callers fall back to PostgreSQL.
The cache fails open for reads and remembers what it could not invalidate
(``PendingInvalidations``), applying it before serving any read again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.cache import scripts
from hita.cache.breaker import BreakerState, CircuitBreaker
from hita.cache.codec import MISS, Entry, decode, encode, new_token
from hita.cache.errorlog import ErrorLog
from hita.cache.inspect import KeyCounts, RedisInfo
from hita.cache.keys import AnyKey, Key, KeyBuilder, Namespace, NamespacedKey, check_name
from hita.cache.pending import PendingInvalidations
from hita.cache.stats import CacheStats
from hita.config import CacheConfig
from hita.constants import CACHE_ERROR_LOG_INTERVAL_S

log = logging.getLogger(__name__)

T = TypeVar("T")

PING_TIMEOUT_S: Final = 1.0
SCAN_COUNT: Final = 1_000  # keys per SCAN page
UNLINK_BATCH: Final = 1_000  # keys per UNLINK
LEASE_POLL_FIRST_S: Final = 0.005
LEASE_POLL_MAX_S: Final = 0.05
RETRY_PENDING_FIRST_S: Final = 0.05

# Errors that mean "Redis is not reachable right now": they open the breaker.
OUTAGE_ERRORS: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OSError,
    TimeoutError,
)

HIT: Final = 1
MISSED: Final = 0
BUSY: Final = 2


class _Failed:
    __slots__ = ()


FAILED: Final = _Failed()


class _Abandoned(Exception):  # an internal signal; never escapes
    """The loader a reader was waiting for was cancelled; load yourself."""


@dataclass(slots=True)
class _Read:
    status: int
    data_key: str
    token: str = ""  # lease token: ours after a miss, another reader's when busy
    entry: Entry | None = None
    pttl_ms: int = -1


Transition = Callable[[BreakerState, BreakerState], None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisCache:
    def __init__(
        self,
        redis: Redis,
        config: CacheConfig,
        keys: KeyBuilder | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._redis = redis
        self.config = config
        self.keys = keys or KeyBuilder()
        self.stats = CacheStats()
        self.errors = ErrorLog(log, CACHE_ERROR_LOG_INTERVAL_S)
        self._transition_listeners: list[Transition] = []
        self.breaker = CircuitBreaker(
            config.breaker.failure_threshold,
            config.breaker.open_s,
            clock=clock,
            on_transition=self._on_transition,
        )
        self.pending = PendingInvalidations(config.pending_max_users)
        self._clock = clock
        self._rng = rng
        self._flush_lock = asyncio.Lock()
        self._flights: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry_task: asyncio.Task[None] | None = None
        self._read_script = redis.register_script(scripts.READ)
        self._fill_script = redis.register_script(scripts.FILL)
        self._release_script = redis.register_script(scripts.RELEASE)
        self._generation_script = redis.register_script(scripts.GENERATION)
        self._claim_slot_script = redis.register_script(scripts.CLAIM_SLOT)

    # -- plumbing -------------------------------------------------------------

    @property
    def redis(self) -> Redis:
        return self._redis

    @property
    def available(self) -> bool:
        """Whether the breaker currently lets calls through (no I/O)."""
        return self.breaker.state is not BreakerState.OPEN

    def on_transition(self, listener: Transition) -> None:
        self._transition_listeners.append(listener)

    def _on_transition(self, old: BreakerState, new: BreakerState) -> None:
        self.stats.breaker_transitions[f"{old.value}->{new.value}"] += 1
        for listener in self._transition_listeners:
            listener(old, new)

    async def _call(self, cache_type: str, op: str, fn: Callable[[], Awaitable[T]]) -> T | _Failed:
        """Run one Redis operation behind the breaker, after any pending invalidations."""
        if not self.breaker.allow():
            return FAILED
        try:
            if self.pending:
                await self._flush_pending()
            result = await fn()
        except OUTAGE_ERRORS as exc:
            if _cancelling():  # redis-py reports a read cut short by cancellation as a timeout
                self.breaker.abandon()
                raise asyncio.CancelledError() from exc
            self.breaker.record_failure()
            self.stats[cache_type].errors += 1
            self.errors.report(logging.WARNING, exc, f"cache {op} ({cache_type}) failed")
            return FAILED
        except RedisError as exc:  # Redis answered, but refused the command
            self.breaker.record_success()
            self.stats[cache_type].errors += 1
            self.errors.report(logging.ERROR, exc, f"cache {op} ({cache_type}) refused")
            return FAILED
        except BaseException:
            self.breaker.abandon()
            raise
        self.breaker.record_success()
        return result

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ping(self, *, what: str = "cache ping failed") -> bool:
        """The truth about Redis right now, whatever the breaker thinks; on
        failure, ``what`` and Redis's reason are logged (at most once per interval)."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError) as exc:
            self.errors.report(logging.WARNING, exc, what)
            return False

    async def aclose(self) -> None:
        tasks = [*self._tasks, *([self._retry_task] if self._retry_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._redis.aclose()
        await self._redis.connection_pool.aclose()

    # -- the seed's operations -------------------------------------------------

    async def get(self, key: AnyKey) -> Any:
        """The cached value, or ``MISS``. Falsy values (0, [], {}, "", False, None) are hits."""
        counters = self.stats[key.cache_type]
        read = await self._read(key, lease=False)
        if read is None or read.entry is None:
            counters.misses += 1
            return MISS
        value = self._value(key, read.entry)
        if value is MISS:
            counters.misses += 1
        else:
            counters.hits += 1
        return value

    async def set(self, key: Key, value: Any, ttl: float) -> bool:
        """Store unconditionally. For data read from the database, prefer
        ``get_or_load``, whose lease keeps a stale read from landing after an
        invalidation."""
        raw = encode(value)
        result = await self._call(
            key.cache_type, "set", lambda: self._redis.set(key.redis_key, raw, px=_ms(ttl))
        )
        if isinstance(result, _Failed):
            return False
        self.stats[key.cache_type].sets += 1
        return True

    async def delete(self, key: Key, *, cause: str = "code") -> bool:
        """Remove one entry. False means Redis could not be reached: the
        deletion is remembered and applied before the cache serves reads again."""
        return await self.invalidate(keys=[key], cause=cause)

    async def delete_pattern(self, pattern: str, *, cause: str = "code") -> int:
        """Remove every key matching ``pattern`` with SCAN and batched UNLINK
        (never KEYS, which blocks Redis for every client). Returns the count;
        0 with the pattern remembered when Redis could not be reached."""
        cache_type = self._check_pattern(pattern)
        self.stats.invalidated(cache_type, cause)
        result = await self._call(
            cache_type, "delete_pattern", lambda: self._unlink_matching(pattern)
        )
        if isinstance(result, _Failed):
            self._defer(lambda p: p.add_pattern(pattern))
            return 0
        return result

    async def exists(self, key: Key) -> bool:
        result = await self._call(
            key.cache_type, "exists", lambda: self._redis.getrange(key.redis_key, 0, 0)
        )
        return not isinstance(result, _Failed) and result == b"v"

    async def get_many(self, keys: Sequence[Key]) -> list[Any]:
        """Values (or ``MISS``) for many keys in one round trip."""
        if not keys:
            return []

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key.redis_key)
                return list(await pipe.execute())

        raws = await self._call(keys[0].cache_type, "get_many", run)
        values: list[Any] = []
        for i, key in enumerate(keys):
            entry = None if isinstance(raws, _Failed) else decode(raws[i])
            value = MISS if entry is None else self._value(key, entry)
            counters = self.stats[key.cache_type]
            if value is MISS:
                counters.misses += 1
            else:
                counters.hits += 1
            values.append(value)
        return values

    async def set_many(self, items: Mapping[Key, Any], ttl: float) -> bool:
        if not items:
            return True
        encoded = {key: encode(value) for key, value in items.items()}

        async def run() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, raw in encoded.items():
                    pipe.set(key.redis_key, raw, px=_ms(ttl))
                await pipe.execute()

        first = next(iter(items))
        if isinstance(await self._call(first.cache_type, "set_many", run), _Failed):
            return False
        for key in items:
            self.stats[key.cache_type].sets += 1
        return True

    async def invalidate_namespace(self, namespace: Namespace, *, cause: str = "code") -> bool:
        """Invalidate every entry of a namespace in O(1): one SET of a new
        generation, whatever the number of entries. Deferred when Redis is down."""
        return await self.invalidate(namespaces=[namespace], cause=cause)

    async def invalidate(
        self,
        namespaces: Sequence[Namespace] = (),
        keys: Sequence[Key] = (),
        *,
        cause: str = "code",
    ) -> bool:
        """Bump namespaces and delete entries, all in one round trip. False
        means Redis could not be reached: everything is remembered and applied
        before the cache serves reads again."""
        if not namespaces and not keys:
            return True
        cache_type = namespaces[0].name if namespaces else keys[0].cache_type
        for name in {n.name for n in namespaces} | {k.cache_type for k in keys}:
            self.stats.invalidated(name, cause)
        result = await self._call(
            cache_type, "invalidate", lambda: self._apply_invalidations(namespaces, keys)
        )
        if isinstance(result, _Failed):

            def remember(pending: PendingInvalidations) -> None:
                for namespace in namespaces:
                    pending.add_namespace(namespace)
                for key in keys:
                    pending.add_key(key, self.keys.pattern(key.cache_type))

            self._defer(remember)
            return False
        return True

    async def _apply_invalidations(
        self, namespaces: Iterable[Namespace], keys: Iterable[Key]
    ) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for namespace in namespaces:
                pipe.set(namespace.generation_key, new_token())
            for key in keys:
                pipe.unlink(key.redis_key)
            await pipe.execute()

    async def claim_slot(self, job: str, slot_s: float) -> int | None:
        """Claim the current ``slot_s``-long time slot of a periodic job: exactly
        one caller across every instance on this Redis gets it. Returns the slot
        number, or None (another instance has it, or Redis is unreachable)."""
        base = f"{self.keys.prefix}lock:{{{check_name(job)}}}"
        result = await self._call(
            "lock",
            "claim_slot",
            lambda: self._claim_slot_script(keys=[base], args=[_ms(slot_s), new_token()]),
        )
        if isinstance(result, _Failed) or int(result) < 0:
            return None
        return int(result)

    async def server_info(self) -> RedisInfo | None:
        """INFO, parsed; None when Redis cannot be reached (or the breaker is open)."""
        result = await self._call("info", "info", self._redis.info)
        return None if isinstance(result, _Failed) else RedisInfo.parse(result)

    async def count_keys(self, families: Iterable[str], budget_s: float) -> KeyCounts | None:
        """Keys per family (``user_details``...), by one SCAN pass over this
        service's prefix (never KEYS). Past ``budget_s`` the counts are estimates."""
        wanted = {check_name(f) for f in families}
        prefix = self.keys.prefix

        async def scan() -> KeyCounts:
            counts = KeyCounts(dict.fromkeys(sorted(wanted), 0))
            deadline = self._clock() + budget_s
            async for name in self._redis.scan_iter(match=f"{prefix}*", count=SCAN_COUNT):
                counts.scanned += 1
                family = name.decode(errors="replace").removeprefix(prefix).partition(":")[0]
                if family in wanted:
                    counts.add(family)
                if counts.scanned % SCAN_COUNT == 0 and self._clock() > deadline:
                    counts.extrapolate(await self._redis.dbsize())
                    break
            return counts

        result = await self._call("info", "count_keys", scan)
        return None if isinstance(result, _Failed) else result

    # -- read-through with stampede protection ---------------------------------

    async def get_or_load(
        self,
        key: AnyKey,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float,
        negative_ttl: float | None = None,
    ) -> T:
        """The cached value, or ``loader()``'s, stored for ``ttl`` seconds.

        A ``None`` result is stored for ``negative_ttl`` seconds when given
        (negative caching), else not at all. Concurrent misses of one key share
        one loader call: in this process through a future, across processes
        through the lease the first reader takes in Redis; the others wait up
        to ``lease_wait_ms`` for its value. Hot entries are recomputed shortly
        before they expire (XFetch) so readers practically never miss.
        """
        counters = self.stats[key.cache_type]
        deadline = self._clock() + self.config.lease_wait_ms / 1000
        delay = LEASE_POLL_FIRST_S
        waited = False
        while True:
            read = await self._read(key, lease=True)
            if read is None or read.status == HIT:
                value = MISS if read is None or read.entry is None else self._value(key, read.entry)
                if read is None or value is MISS:  # Redis unavailable, or an unreadable entry
                    counters.misses += 1
                    return await loader()
                counters.hits += 1
                self._maybe_refresh_early(key, read, loader, ttl)
                return cast(T, value)
            if read.status == MISSED:  # the lease is ours
                counters.misses += 1
                return await self._load_and_fill(key, read, loader, ttl, negative_ttl)
            if not waited:  # another reader holds the lease
                counters.lease_waits += 1
                waited = True
            flight = self._flights.get((read.data_key, read.token))
            if flight is not None or self._clock() >= deadline:
                counters.misses += 1
                return await _join(flight, loader)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LEASE_POLL_MAX_S)

    async def refresh(
        self, key: NamespacedKey, loader: Callable[[], Awaitable[T]], *, ttl: float
    ) -> T:
        """Recompute an entry now and store it (the scheduled refresh).

        The generation is read before the loader runs: if an invalidation
        happens meanwhile, the value lands in the old generation, never read."""
        namespace = key.namespace
        generation = await self._call(
            key.cache_type,
            "generation",
            lambda: self._generation_script(keys=[namespace.generation_key], args=[new_token()]),
        )
        started = self._clock()
        value = await loader()
        if not isinstance(generation, _Failed):
            data_key = namespace.data_key(_text(generation), key.suffix)
            await self._fill(
                key,
                data_key,
                expected="*",
                value=value,
                ttl=ttl,
                delta_s=self._clock() - started,
                allow_absent=True,
            )
        return value

    async def _read(self, key: AnyKey, *, lease: bool) -> _Read | None:
        token = new_token() if lease else ""
        lease_ms = str(self.config.lease_ttl_ms)
        if isinstance(key, Key):
            keys, args = [key.redis_key], ["", "", "", token, lease_ms]
        else:
            ns = key.namespace
            keys = [ns.generation_key]
            args = [ns.data_prefix, key.suffix, new_token(), token, lease_ms]
        result = await self._call(
            key.cache_type, "read", lambda: self._read_script(keys=keys, args=args)
        )
        if isinstance(result, _Failed):
            return None
        status = int(result[0])
        data_key = (
            key.redis_key
            if isinstance(key, Key)
            else key.namespace.data_key(_text(result[1]), key.suffix)
        )
        if status == HIT:
            return _Read(HIT, data_key, entry=decode(result[2]), pttl_ms=int(result[3]))
        return _Read(status, data_key, token=_text(result[2]) if len(result) > 2 else "")

    def _value(self, key: AnyKey, entry: Entry) -> Any:
        try:
            return entry.value
        except orjson.JSONDecodeError:
            self.stats[key.cache_type].errors += 1
            log.error("cache entry of type %s is not valid JSON; ignoring it", key.cache_type)
            return MISS

    async def _load_and_fill(
        self,
        key: AnyKey,
        read: _Read,
        loader: Callable[[], Awaitable[T]],
        ttl: float,
        negative_ttl: float | None,
    ) -> T:
        flight_key = (read.data_key, read.token)
        flight: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        flight.add_done_callback(_consume_exception)
        self._flights[flight_key] = flight
        started = self._clock()
        try:
            value = await loader()
        except asyncio.CancelledError:
            flight.set_exception(_Abandoned())
            self._spawn(self._release(key, read))
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            self._spawn(self._release(key, read))
            raise
        finally:
            self._flights.pop(flight_key, None)
        flight.set_result(value)
        # The lease is filled or given back on every path: a fill that Redis
        # refused (OOM) or could not take, or a caller cancelled mid-fill, must
        # not leave later readers waiting for a lease nobody will fill.
        try:
            stored = (value is not None or negative_ttl is not None) and await self._fill(
                key,
                read.data_key,
                expected=read.token,
                value=value,
                ttl=ttl if value is not None else negative_ttl or ttl,
                delta_s=self._clock() - started,
                allow_absent=isinstance(key, NamespacedKey),
            )
            if not stored:
                await self._release(key, read)
        except BaseException:
            self._spawn(self._release(key, read))
            raise
        return value

    async def _fill(
        self,
        key: AnyKey,
        data_key: str,
        *,
        expected: str,
        value: Any,
        ttl: float,
        delta_s: float,
        allow_absent: bool,
    ) -> bool:
        raw = encode(value, delta_s * 1000)
        stored = await self._call(
            key.cache_type,
            "fill",
            lambda: self._fill_script(
                keys=[data_key], args=[expected, raw, _ms(ttl), "1" if allow_absent else "0"]
            ),
        )
        if isinstance(stored, _Failed) or not stored:
            return False
        self.stats[key.cache_type].sets += 1
        return True

    async def _release(self, key: AnyKey, read: _Read) -> None:
        """Give an unused lease back; when Redis cannot take it now, keep trying
        in the background until the lease would have expired anyway."""
        if not await self._try_release(key, read):
            self._spawn(self._release_later(key, read))

    async def _try_release(self, key: AnyKey, read: _Read) -> bool:
        result = await self._call(
            key.cache_type,
            "release",
            lambda: self._release_script(keys=[read.data_key], args=[read.token]),
        )
        return not isinstance(result, _Failed)

    async def _release_later(self, key: AnyKey, read: _Read) -> None:
        deadline = self._clock() + self.config.lease_ttl_ms / 1000
        delay = RETRY_PENDING_FIRST_S
        while self._clock() < deadline:
            await asyncio.sleep(delay)
            if await self._try_release(key, read):
                return
            delay = min(delay * 2, max(self.breaker.open_s, RETRY_PENDING_FIRST_S))

    def _maybe_refresh_early(
        self, key: AnyKey, read: _Read, loader: Callable[[], Awaitable[Any]], ttl: float
    ) -> None:
        """XFetch: recompute early with a probability that grows as expiry nears
        and with how long the value took to compute."""
        entry = read.entry
        beta = self.config.xfetch_beta
        if entry is None or beta <= 0 or entry.delta_ms <= 0 or read.pttl_ms < 0:
            return
        if -entry.delta_ms * beta * math.log(1.0 - self._rng()) < read.pttl_ms:
            return
        if read.data_key in self._refreshing:
            return
        self._refreshing.add(read.data_key)
        self._spawn(self._refresh_early(key, read, entry, loader, ttl))

    async def _refresh_early(
        self,
        key: AnyKey,
        read: _Read,
        entry: Entry,
        loader: Callable[[], Awaitable[Any]],
        ttl: float,
    ) -> None:
        try:
            started = self._clock()
            value = await loader()
            if await self._fill(
                key,
                read.data_key,
                expected=entry.version,
                value=value,
                ttl=ttl,
                delta_s=self._clock() - started,
                allow_absent=isinstance(key, NamespacedKey),
            ):
                self.stats[key.cache_type].early_refreshes += 1
        except Exception:
            log.warning(
                "early refresh of %s failed; the entry expires as usual",
                key.cache_type,
                exc_info=True,
            )
        finally:
            self._refreshing.discard(read.data_key)

    # -- invalidations that could not reach Redis ------------------------------

    def _defer(self, add: Callable[[PendingInvalidations], None]) -> None:
        first = not self.pending
        add(self.pending)
        if first:  # one line per episode, not per write (the reason is logged by _call)
            log.warning("Redis did not take an invalidation: deferred until it does")
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.get_running_loop().create_task(self._retry_pending())

    async def _retry_pending(self) -> None:
        """Keep trying until Redis answers, so other instances stop seeing old
        entries as soon as possible, not only when this one next reads."""
        delay = RETRY_PENDING_FIRST_S
        while self.pending:
            await asyncio.sleep(delay)
            delay = min(delay * 2, max(self.breaker.open_s, RETRY_PENDING_FIRST_S))
            await self._call("pending", "flush", _nothing)

    async def _flush_pending(self) -> None:
        """Apply every pending invalidation; raises (and keeps them) on failure."""
        async with self._flush_lock:
            if not self.pending:
                return
            batch = self.pending
            self.pending = PendingInvalidations(batch.max_keys)
            try:
                if batch.namespaces or batch.keys:
                    await self._apply_invalidations(batch.namespaces.values(), batch.keys.values())
                    batch.namespaces.clear()
                    batch.keys.clear()
                for pattern in sorted(batch.patterns):
                    await self._unlink_matching(pattern)
                    batch.discard_pattern(pattern)
            except BaseException:
                self.pending.merge(batch)
                raise
            log.info("applied pending invalidations")

    # -- helpers ---------------------------------------------------------------

    def _check_pattern(self, pattern: str) -> str:
        """Only whole families under our prefix: ``<prefix><name>:...``."""
        rest = pattern.removeprefix(self.keys.prefix)
        name, sep, _ = rest.partition(":")
        if not pattern.startswith(self.keys.prefix) or not sep or not name.isidentifier():
            raise ValueError(f"refusing pattern {pattern!r}: it must start with a cache name")
        return name

    async def _unlink_matching(self, pattern: str) -> int:
        removed = 0
        batch: list[bytes] = []
        async for name in self._redis.scan_iter(match=pattern, count=SCAN_COUNT):
            batch.append(name)
            if len(batch) >= UNLINK_BATCH:
                removed += await self._redis.unlink(*batch)
                batch.clear()
        if batch:
            removed += await self._redis.unlink(*batch)
        return removed


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


async def _join(flight: asyncio.Future[Any] | None, loader: Callable[[], Awaitable[T]]) -> T:
    """The value of a load under way in this process; our own load if there is
    none (the lease belongs to another process that is taking too long) or if
    that load was cancelled."""
    if flight is not None:
        try:
            return cast(T, await asyncio.shield(flight))
        except _Abandoned:
            pass
    return await loader()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _nothing() -> None:
    return None
