"""The plumbing under ``RedisCache``: the one boundary where driver errors are
caught, the circuit breaker, owned background tasks.

An outage (refused, reset, timed out) counts against the breaker and turns
into ``FAILED``, which callers treat as a miss or a no-op, so reads fall back
to PostgreSQL. A pool that has no free connection within its wait is local
overload, not an outage: it fails the call without counting against Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hita.cache import scripts, topology
from hita.cache.breaker import BreakerState, CircuitBreaker
from hita.cache.codec import now_ms
from hita.cache.connection import PoolExhausted, RedisClient
from hita.cache.errorlog import ErrorLog
from hita.cache.keys import KeyBuilder
from hita.cache.near import BREAKER_OPEN, PATTERN, TRACKING_LOST, NearCache
from hita.cache.pending import Invalidation, PendingInvalidations
from hita.cache.read_pipe import ReadPipe, read_pipe_for
from hita.cache.replication import Replicas
from hita.cache.sentinel_watch import replicas_for
from hita.cache.stats import READS, CacheStats
from hita.cache.tracking import Tracking
from hita.config import CacheConfig
from hita.constants import CACHE_ERROR_LOG_INTERVAL_S
from hita.tasks import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")

PING_TIMEOUT_S: Final = 1.0
WITNESS_KEEP_MS: Final = 60_000  # instances silent this long leave the witness set
WITNESS_WAIT_S: Final = 0.5  # a witness that lapses this soon is waited out, not believed
WITNESS_MARGIN_S: Final = 0.01

# Errors that mean "Redis is not reachable right now": they open the breaker.
OUTAGE_ERRORS: Final = topology.OUTAGE_ERRORS


class _Failed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FAILED"


FAILED: Final = _Failed()

Transition = Callable[[BreakerState, BreakerState], None]


def is_pool_exhausted(exc: BaseException) -> bool:
    return isinstance(exc, PoolExhausted)


class CacheCore:
    def __init__(
        self,
        redis: RedisClient,
        config: CacheConfig,
        keys: KeyBuilder | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        stale_ok: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._redis = redis
        self.config = config
        self.keys = keys or KeyBuilder()
        self.stats = CacheStats()
        self.errors = ErrorLog(log, CACHE_ERROR_LOG_INTERVAL_S)  # one line per kind per interval
        self._transition_listeners: list[Transition] = []
        self.breaker = CircuitBreaker(
            config.breaker.failure_threshold,
            config.breaker.open_s,
            clock=clock,
            on_transition=self._on_transition,
            probe=self._probe_in_background,
        )
        self.pending = PendingInvalidations(config.pending_max_users)
        # Loader errors after which an untrusting reader may still serve what
        # Redis holds, if no instance has reached the source recently (it is
        # down for everyone, so no write can have been acknowledged since).
        self.stale_ok = stale_ok
        self.instance = ""  # this instance's name among those that reach the source
        self._clock = clock
        self._rng = rng
        self._tasks: set[asyncio.Task[None]] = set()
        self.replicas: Replicas = replicas_for(redis)  # whom an invalidation WAITs for
        self.read_pipe: ReadPipe | None = read_pipe_for(redis)  # GETs and MGETs, pipelined
        self.near: NearCache | None = None  # L1, when attached with its tracking
        self.tracking: Tracking | None = None
        self._read_script = redis.register_script(scripts.READ)
        self._fill_script = redis.register_script(scripts.FILL)
        self._release_script = redis.register_script(scripts.RELEASE)
        self._generation_script = redis.register_script(scripts.GENERATION)
        self._claim_slot_script = redis.register_script(scripts.CLAIM_SLOT)
        self._witness_script = redis.register_script(scripts.WITNESS)

    @property
    def redis(self) -> RedisClient:
        return self._redis

    def attach_near(self, near: NearCache, tracking: Tracking) -> None:
        """Serve hits from ``near`` while ``tracking`` keeps it coherent."""
        self.near, self.tracking = near, tracking

    def tracked_keys(self, keys: list[str] | None, reason: str = TRACKING_LOST) -> None:
        """Redis says ``keys`` changed (None: everything, or tracking was lost)."""
        if self.near is not None:
            if keys is None:
                self.near.flush(reason)
            else:
                self.near.invalidate(keys)

    def _usable_near(self, *, drain: bool = True) -> NearCache | None:
        """L1, if it may serve now: tracking connected, breaker closed, and every
        invalidation message already received processed. ``drain=False`` skips
        that last step (a system call), for a caller that only asks what L1
        holds and serves nothing from it."""
        near, tracking = self.near, self.tracking
        if near is None or tracking is None or self.breaker.state is not BreakerState.CLOSED:
            return None
        if not drain:
            return near if tracking.active else None
        return near if tracking.drain() else None

    def _serving_near(self) -> NearCache | None:
        """L1, if it may serve a hit now: as ``_usable_near``, draining the
        tracking socket once per operation (``ReadScope``), not once per read."""
        near, tracking = self.near, self.tracking
        if near is None or tracking is None or self.breaker.state is not BreakerState.CLOSED:
            return None
        scope = READS.get()
        if scope is None or not scope.live:
            return near if tracking.drain() else None
        if scope.caught_up:
            return near if tracking.active else None
        scope.caught_up = tracking.drain()
        return near if scope.caught_up else None

    def _ttl_ms(self, ttl: float) -> int:
        """A fill's TTL in ms, drawn from [``ttl`` * (1 - jitter), ``ttl``]
        (``CACHE_TTL_JITTER``): keys filled together, by a warm-up or a burst
        of misses, then do not all expire, and reload from PostgreSQL, at once.
        Never longer than ``ttl``, so every documented staleness bound holds."""
        return ms(ttl * (1.0 - self.config.ttl_jitter * self._rng()))

    def _forget_near(self, invalidation: Invalidation) -> None:
        """Our own invalidation: out of L1 at once, before Redis even answers."""
        if self.near is None:
            return
        if invalidation.patterns:
            self.near.flush(PATTERN)
            return
        self.near.invalidate(
            [n.generation_key for n in invalidation.namespaces]
            + [k.redis_key for k in invalidation.keys]
        )

    @property
    def available(self) -> bool:
        """Whether the breaker currently lets calls through (no I/O)."""
        return self.breaker.state is not BreakerState.OPEN

    def on_transition(self, listener: Transition) -> None:
        self._transition_listeners.append(listener)

    def _on_transition(self, old: BreakerState, new: BreakerState) -> None:
        self.stats.transitioned(f"{old.value}->{new.value}")
        if new is BreakerState.OPEN and self.near is not None:
            self.near.flush(BREAKER_OPEN)  # Redis is in trouble: L1 waits until it is well again
        for listener in self._transition_listeners:
            listener(old, new)

    async def _call(
        self,
        cache_type: str,
        op: str,
        fn: Callable[[], Awaitable[T]],
        *,
        force: bool = False,
    ) -> T | _Failed:
        """Run one Redis operation behind the breaker. ``force`` (invalidations,
        which are writes that matter) tries even while the breaker is open; its
        outcome still informs the breaker."""
        if not force and not self.breaker.allow():
            return FAILED
        try:
            result = await fn()
        except OUTAGE_ERRORS as exc:
            if _cancelling():  # redis-py reports a read cut short by cancellation as a timeout
                self.breaker.abandon()
                raise asyncio.CancelledError() from exc
            self.stats[cache_type].errors += 1
            if is_pool_exhausted(exc):  # our own overload, not Redis's failure
                self.breaker.abandon()
                self.errors.report(logging.WARNING, exc, f"cache {op} ({cache_type}): pool busy")
            elif isinstance(exc, RedisTimeoutError):  # a request waited the whole timeout:
                self.breaker.trip()  # the next ones must not
                self.errors.report(logging.WARNING, exc, f"cache {op} ({cache_type}) timed out")
            else:
                self.breaker.record_failure()
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

    async def _read_command(self, *args: str) -> Any:
        """One read-only command (GET, MGET): on one server, through the read
        pipe (``hita.cache.read_pipe``); else through the client's public
        ``execute_command`` (on Cluster, routed by slot)."""
        pipe = self.read_pipe
        if pipe is not None:
            return await pipe.call(*args)
        return await self._redis.execute_command(*args)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def _witness_key(self) -> str:
        return f"{self.keys.prefix}coherence:source_reachable"

    def note_source_reachable(self, member: str, for_s: float) -> None:
        """Instance ``member`` reached the source of truth just now: say so in
        Redis for ``for_s`` seconds, for instances that cannot reach it."""
        if self.stale_ok and self.breaker.state is BreakerState.CLOSED:
            self._spawn(self._note(member, for_s))

    async def _note(self, member: str, for_s: float) -> None:
        key, until = self._witness_key, now_ms() + ms(for_s)
        await self._call(
            "coherence",
            "witness",
            lambda: self._witness_script(keys=[key], args=[until, member, WITNESS_KEEP_MS]),
        )

    async def others_reached_source(self, member: str) -> bool:
        """Has any instance but ``member`` said it reached the source, within its
        lease? True when Redis cannot tell (the safe answer). Witnesses that
        lapse within ``WITNESS_WAIT_S`` are waited out: instances that lost the
        source together lose their leases a renewal apart."""
        key = self._witness_key
        for _ in range(2):
            result = await self._call(
                "coherence",
                "witness",
                lambda: self._redis.zrangebyscore(key, now_ms(), "+inf", withscores=True),
            )
            if isinstance(result, _Failed):
                return True
            others = [
                score for m, score in cast(list[tuple[bytes, float]], result) if text(m) != member
            ]
            if not others:
                return False
            wait_s = (max(others) - now_ms()) / 1000
            if wait_s > WITNESS_WAIT_S:
                return True
            await asyncio.sleep(max(wait_s, 0) + WITNESS_MARGIN_S)
        return True

    def _probe_in_background(self) -> None:
        """The breaker's half-open probe: a PING apart from every request, its
        outcome recorded like a call's (requests are refused meanwhile)."""
        self._spawn(self._probe_once())

    async def _probe_once(self) -> None:
        try:
            healthy = await self.ping(what="cache probe failed")
        except BaseException:
            self.breaker.abandon()
            raise
        if healthy:
            self.breaker.record_success()
        else:
            self.breaker.record_failure()

    async def ping(self, *, what: str = "cache ping failed") -> bool:
        """The truth about Redis right now, whatever the breaker thinks; on
        failure, ``what`` and Redis's reason are logged (at most once per interval)."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                return await topology.ping(self._redis)
        except (RedisError, OSError, TimeoutError) as exc:
            self.errors.report(logging.WARNING, exc, what)
            return False

    async def aclose(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
        if self.read_pipe is not None:
            await self.read_pipe.aclose()
        await topology.close(self._redis)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
