"""Read-through with leases, single flight and early recomputation.

``get_or_load`` reads an entry (resolving a namespace's generation on the
server), and on a miss takes a *lease* in the entry's place: only its holder
may fill the entry, and an invalidation deletes it, so a loader that read the
old row before a write can never store it after the write's invalidation.

A read never serves an entry this process holds suspect (an invalidation it
knows of but has not yet seen applied): it is checked before the read is sent
and again when the answer comes back, so a notification that arrives while
the read is in flight still wins.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import orjson
from redis.asyncio import Redis

from hita.cache.codec import MISS, NO_EXPIRY, Entry, _Miss, decode, encode, new_token, now_ms
from hita.cache.core import CacheCore, _Failed, ms, text
from hita.cache.keys import AnyKey, Key, NamespacedKey
from hita.cache.near import NearCache
from hita.cache.stats import L1
from hita.cache.view import View

log = logging.getLogger(__name__)

T = TypeVar("T")

LEASE_POLL_FIRST_S: Final = 0.005
LEASE_POLL_MAX_S: Final = 0.05
RELEASE_RETRY_FIRST_S: Final = 0.05  # first pause before giving a lease back again
MAX_GENERATIONS_KEPT: Final = 1_024  # namespaces whose generation is remembered

HIT: Final = 1
MISSED: Final = 0
BUSY: Final = 2


class _Abandoned(Exception):  # an internal signal; never escapes
    """The loader a reader was waiting for was cancelled; load yourself."""


@dataclass(slots=True)
class _Read:
    status: int
    data_key: str
    token: str = ""  # lease token: ours after a miss, another reader's when busy
    entry: Entry | None = None
    pttl_ms: int = -1
    raw: bytes = b""  # a hit's stored bytes
    generation: str | None = None  # a namespaced key's generation, as read


@dataclass(slots=True)
class _Ahead:
    """An answer read ahead, with what was known when it was asked for."""

    raw: bytes | None
    epoch: int  # the pending invalidations' epoch when the read was sent
    began: int | None  # L1's sequence number then
    uses: int  # reads it may still serve


# Answers read ahead by a task (one request), for that task alone: each is
# used once, by the task's next read of its key. aiohttp runs every request in
# its own task, so nothing read ahead outlives its request; a task started from
# it copies the variable but is not its owner, so it reads for itself.
_AHEAD: ContextVar[tuple[asyncio.Task[Any], dict[str, _Ahead]] | None] = ContextVar(
    "hita_cache_read_ahead", default=None
)


class ReadThrough(CacheCore):
    _flights: dict[tuple[str, str], asyncio.Future[Any]]
    _refreshing: set[str]
    _generations: dict[str, str]  # generation key -> the generation last seen

    def _init_read_through(self) -> None:
        self._flights = {}
        self._refreshing = set()
        self._generations = {}

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
        if self.pending.covers(key):
            counters.miss()
            return await self._load_bypassing(key, loader)
        value = self._near_hit(key)
        if value is not MISS:
            counters.hit(L1)
            return cast(T, value)
        deadline = self._clock() + self.config.lease_wait_ms / 1000
        delay = LEASE_POLL_FIRST_S
        waited = False
        while True:
            read = await self._read(key, lease=True)
            if read is None or read.status == HIT:
                value = MISS if read is None or read.entry is None else self._value(key, read.entry)
                if read is None or value is MISS:  # Redis unavailable, or an unreadable entry
                    counters.miss()
                    return await loader()
                counters.hit()
                self._maybe_refresh_early(key, read, loader, ttl)
                return cast(T, value)
            if read.status == MISSED:  # the lease is ours
                counters.miss()
                return await self._load_and_fill(key, read, loader, ttl, negative_ttl)
            if not waited:  # another reader holds the lease
                counters.lease_waits += 1
                waited = True
            flight = self._flights.get((read.data_key, read.token))
            if flight is not None or self._clock() >= deadline:
                counters.miss()
                return await _join(flight, loader)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LEASE_POLL_MAX_S)

    async def read_ahead(self, keys: Sequence[Key]) -> None:
        """Read ``keys`` in one round trip (one MGET) for this task's next
        reads of them, so that a request's token check and its data read share
        one round trip: a key listed twice serves two reads. Keys that L1
        holds, suspect keys and a failed read are left to those reads; on
        Redis Cluster, whose keys sit in different slots, nothing is read ahead."""
        if len(keys) < 2 or not isinstance(self._redis, Redis):
            return  # one read: its own GET is the same round trip
        near = self._usable_near(drain=False)  # what L1 holds; its reads drain and check
        uses: dict[str, int] = {}
        for key in keys:
            if not self.pending.covers(key) and (near is None or key.redis_key not in near):
                uses[key.redis_key] = uses.get(key.redis_key, 0) + 1
        if sum(uses.values()) < 2:
            return
        epoch, began = self.pending.epoch, self._near_fence()
        names = list(uses)
        replies = await self._call(
            keys[0].cache_type, "get", lambda: self._read_command("MGET", *names)
        )
        task = asyncio.current_task()
        if isinstance(replies, _Failed) or task is None:
            return
        owned = _AHEAD.get()
        if owned is None or owned[0] is not task:
            owned = (task, {})
            _AHEAD.set(owned)
        for name, raw in zip(names, cast(list[bytes | None], replies), strict=True):
            owned[1][name] = _Ahead(raw, epoch, began, uses[name])

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
            data_key = namespace.data_key(text(generation), key.suffix)
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

    def _near_hit(self, key: AnyKey) -> Any:
        """The value L1 holds for ``key``, or MISS (also when L1 may not serve)."""
        near = self._usable_near()
        if near is None:
            return MISS
        value = self._near_value(near, key)
        if value is MISS:
            self.stats[key.cache_type].l1_misses += 1
        return value

    def _near_fence(self) -> int | None:
        """L1's sequence number for a read starting now; None while L1 may not
        serve (tracking down): what that read brings back is not kept, as an
        invalidation Redis sent meanwhile reached no subscriber."""
        near = self._usable_near(drain=False)
        return None if near is None else near.seq

    def _near_value(self, near: NearCache, key: AnyKey) -> Any:
        data_key = _near_key(near, key)
        raw = None if data_key is None else near.get(data_key)
        entry = None if raw is None else decode(raw)
        if entry is None or _expired(near, cast(str, data_key), entry.expires_ms):
            return MISS
        return self._value(key, entry)

    def near_view(self, key: AnyKey, view: View[T]) -> T | _Miss:
        """``view`` of the value L1 holds for ``key`` (``hita.cache.view``),
        derived the first time and kept with the entry; MISS when L1 may not
        serve it (as ``get_or_load`` would not), which the caller answers by
        reading through the cache as usual."""
        if self.pending.covers(key):
            return MISS
        near = self._usable_near()
        data_key = None if near is None else _near_key(near, key)
        raw = None if near is None or data_key is None else near.get(data_key)
        if raw is None:
            return MISS
        assert near is not None
        assert data_key is not None
        memo = near.memo(data_key)
        assert memo is not None  # the entry is held: near.get found it
        found = memo.get(view.name, MISS)
        if found is MISS:
            entry = decode(raw)
            if entry is None or _expired(near, data_key, entry.expires_ms):
                return MISS
            memo[_EXPIRES] = entry.expires_ms
            found = memo[view.name] = view.derive(self._value(key, entry))
        elif _expired(near, data_key, memo[_EXPIRES]):
            return MISS
        self.stats[key.cache_type].hit(L1)
        return cast(T, found)

    def _keep_near(self, key: AnyKey, read: _Read, began: int | None) -> None:
        """A hit read from Redis goes into L1, unless its key (or namespace) was
        invalidated while it was in flight."""
        near = self._usable_near()
        if near is None or began is None or read.status != HIT or not read.raw:
            return
        if isinstance(key, Key):
            near.put(read.data_key, read.raw, began, cache_type=key.cache_type)
        elif read.generation is not None:
            generation_key = key.namespace.generation_key
            near.put_generation(generation_key, read.generation, began)
            near.put(read.data_key, read.raw, began, generation_key, cache_type=key.cache_type)

    async def _load_bypassing(self, key: AnyKey, loader: Callable[[], Awaitable[T]]) -> T:
        """A suspect entry: the loader's answer, never Redis's. One exception:
        this process suspects it only because its lease ran out (not for a
        change it knows of), the loader failed with a ``stale_ok`` error (the
        database cannot be reached), and no instance has said within its lease
        that it could reach it: the database is down for everyone, no write can
        have been acknowledged since, and what Redis holds is served."""
        if not self.stale_ok or self.pending.trusted or self.pending.covers_specifically(key):
            return await loader()
        try:
            return await loader()
        except self.stale_ok:
            if await self.others_reached_source(self.instance):
                raise
            read = await self._read(key, lease=False, check=False)
            if read is not None and read.status == HIT and read.entry is not None:
                value = self._value(key, read.entry)
                if value is not MISS and not self.pending.covers_specifically(key):
                    self.stats.served_while_source_down += 1
                    return cast(T, value)
            raise

    async def _read(self, key: AnyKey, *, lease: bool, check: bool = True) -> _Read | None:
        """One entry: plain GETs when it is there (a hit costs no script), the
        READ script (generation, lease) when it is not."""
        taken = _take_ahead(key)
        read: _Read | _Failed | None
        if taken is not None:  # read ahead: judged as a read sent back then
            epoch, began = taken.epoch, taken.began
            read = _hit(cast(Key, key).redis_key, taken.raw)
        else:
            epoch, began = self.pending.epoch, self._near_fence()
            read = await self._call(key.cache_type, "get", lambda: self._read_plain(key))
            if isinstance(read, _Failed):
                return None
        if read is None:
            token = new_token() if lease else ""
            scripted = await self._call(
                key.cache_type, "read", lambda: self._read_scripted(key, token)
            )
            if isinstance(scripted, _Failed):
                if token:  # the script may still run, or have run: its lease goes back
                    self._spawn(self._release_later(key, _Read(MISSED, "", token=token)))
                return None
            read = scripted
        if check and self.pending.epoch != epoch and self.pending.covers(key):
            # An invalidation of this entry arrived while the read was in flight.
            if read.status == MISSED and read.token:
                self._spawn(self._release(key, read))
            return None
        self._keep_near(key, read, began)
        return read

    async def _read_plain(self, key: AnyKey) -> _Read | None:
        """A hit in one plain command (its time to live is in the entry's
        header), or None. A namespaced key is read under the generation last
        seen here, with the namespace's current generation beside it in one
        MGET: a mismatch means the generation moved."""
        raw: bytes | None
        if isinstance(key, Key):
            data_key, generation = key.redis_key, None
            raw = cast(bytes | None, await self._read_command("GET", data_key))
        else:
            generation_key = key.namespace.generation_key
            generation = self._generations.get(generation_key)
            if generation is None:
                return None
            data_key = key.namespace.data_key(generation, key.suffix)
            # One command, one slot: the namespace's hash tag holds both keys.
            replies = await self._read_command("MGET", generation_key, data_key)
            current, raw = cast(list[bytes | None], replies)
            if current is None or text(current) != generation:
                return None
        return _hit(data_key, raw, generation)

    async def _read_scripted(self, key: AnyKey, token: str) -> _Read:
        lease_ms = str(self.config.lease_ttl_ms)
        if isinstance(key, Key):
            keys, args = [key.redis_key], ["", "", "", token, lease_ms]
        else:
            ns = key.namespace
            keys = [ns.generation_key]
            args = [ns.data_prefix, key.suffix, new_token(), token, lease_ms]
        result = await self._read_script(keys=keys, args=args)
        status = int(result[0])
        generation: str | None = None
        if isinstance(key, Key):
            data_key = key.redis_key
        else:
            generation = text(result[1])
            self._remember_generation(key.namespace.generation_key, generation)
            data_key = key.namespace.data_key(generation, key.suffix)
        if status == HIT:
            return _Read(
                HIT,
                data_key,
                entry=decode(result[2]),
                pttl_ms=int(result[3]),
                raw=result[2],
                generation=generation,
            )
        return _Read(status, data_key, token=text(result[2]) if len(result) > 2 else "")

    def _remember_generation(self, generation_key: str, generation: str) -> None:
        if len(self._generations) >= MAX_GENERATIONS_KEPT:
            self._generations.clear()
        self._generations[generation_key] = generation

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
        # refused (out of memory) or could not take, or a caller cancelled
        # mid-fill, must not leave later readers waiting on a lease nobody fills.
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
        raw = encode(value, delta_s * 1000, ttl_ms=ms(ttl))
        stored = await self._call(
            key.cache_type,
            "fill",
            lambda: self._fill_script(
                keys=[data_key], args=[expected, raw, ms(ttl), "1" if allow_absent else "0"]
            ),
        )
        if isinstance(stored, _Failed):
            return False
        if not stored:  # the lease was gone: an invalidation came first
            self.stats[key.cache_type].fills_refused += 1
            return False
        self.stats[key.cache_type].sets += 1
        return True

    async def _release(self, key: AnyKey, read: _Read) -> None:
        """Give an unused lease back; when Redis cannot take it now, keep trying
        in the background until the lease would have expired anyway."""
        if not await self._try_release(key, read):
            self._spawn(self._release_later(key, read))

    async def _try_release(self, key: AnyKey, read: _Read) -> bool:
        """``read.data_key`` empty: the read that took the lease lost its answer,
        so a namespaced entry's key is resolved on the server."""
        if isinstance(key, Key):
            keys, args = [key.redis_key], [read.token, "", ""]
        elif read.data_key:
            keys, args = [read.data_key], [read.token, "", ""]
        else:
            ns = key.namespace
            keys, args = [ns.generation_key], [read.token, ns.data_prefix, key.suffix]
        result = await self._call(
            key.cache_type, "release", lambda: self._release_script(keys=keys, args=args)
        )
        return not isinstance(result, _Failed)

    async def _release_later(self, key: AnyKey, read: _Read) -> None:
        deadline = self._clock() + self.config.lease_ttl_ms / 1000
        delay = RELEASE_RETRY_FIRST_S
        while self._clock() < deadline:
            await asyncio.sleep(delay)
            if await self._try_release(key, read):
                return
            delay = min(delay * 2, max(self.breaker.open_s, RELEASE_RETRY_FIRST_S))

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


def _near_key(near: NearCache, key: AnyKey) -> str | None:
    """The data key under which L1 holds ``key``'s entry (for a namespaced key,
    under the generation L1 knows), or None."""
    if isinstance(key, Key):
        return key.redis_key
    generation = near.generation(key.namespace.generation_key)
    return None if generation is None else key.namespace.data_key(generation, key.suffix)


_EXPIRES: Final = "\0expires_ms"  # beside the views in an entry's memo: its TTL, kept once


def _expired(near: NearCache, data_key: str, expires_ms: object) -> bool:
    """Whether an entry L1 holds is past its TTL (Redis has let it go too);
    if so, L1 drops it."""
    if expires_ms == NO_EXPIRY or cast(int, expires_ms) > now_ms():
        return False
    near.invalidate([data_key])
    return True


def _hit(data_key: str, raw: bytes | None, generation: str | None = None) -> _Read | None:
    """A hit read with plain commands, or None (absent, a lease, foreign data)."""
    entry = decode(raw)
    if raw is None or entry is None:
        return None
    return _Read(HIT, data_key, entry=entry, pttl_ms=entry.ttl_ms(), raw=raw, generation=generation)


def _take_ahead(key: AnyKey) -> _Ahead | None:
    """This task's answer read ahead for ``key``, used once per listing."""
    owned = _AHEAD.get()
    if owned is None or not isinstance(key, Key) or owned[0] is not asyncio.current_task():
        return None
    taken = owned[1].get(key.redis_key)
    if taken is not None:
        taken.uses -= 1
        if not taken.uses:
            del owned[1][key.redis_key]
    return taken


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
