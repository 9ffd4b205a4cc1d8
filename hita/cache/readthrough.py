"""Read-through with leases, single flight and early recomputation.

``get_or_load`` reads an entry (resolving a namespace's generation on the
server), and on a miss takes a *lease* in the entry's place: only its holder
may fill the entry, and an invalidation deletes it, so a loader that read the
old row before a write can never store it after the write's invalidation.

A read never serves an entry this process holds suspect (an invalidation it
knows of but has not yet seen applied): it is checked before the read is sent
and again when the answer comes back, so a notification that arrives while
the read is in flight still wins.

The parts, each its own module: ``reads`` (Redis reads), ``xfetch``
(early recomputation), ``leases`` (leases, single flight, fills),
``near_reads`` (the L1 tier), ``outcome`` (what a read found)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar, cast

from hita.cache.codec import MISS, new_token
from hita.cache.core import _Failed, text
from hita.cache.keys import AnyKey, NamespacedKey
from hita.cache.leases import join_flight
from hita.cache.outcome import HIT, MISSED
from hita.cache.reads import Reads
from hita.cache.stats import L1

T = TypeVar("T")

LEASE_POLL_FIRST_S: Final = 0.005

LEASE_POLL_MAX_S: Final = 0.05


class ReadThrough(Reads):
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
                return await join_flight(flight, loader)
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
