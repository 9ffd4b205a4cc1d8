"""Leases and single flight: the reader that missed holds the entry's lease
and fills it (``_load_and_fill``); concurrent readers in this process join its
load; a lease not filled goes back to Redis on every path, retried in the
background while Redis cannot take it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

from hita.cache.codec import encode
from hita.cache.core import _Failed
from hita.cache.keys import AnyKey, Key, NamespacedKey
from hita.cache.near_reads import NearReads
from hita.cache.outcome import Read

T = TypeVar("T")

RELEASE_RETRY_FIRST_S: Final = 0.05  # first pause before giving a lease back again


class _Abandoned(Exception):  # an internal signal; never escapes
    """The loader a reader was waiting for was cancelled; load yourself."""


class Leases(NearReads):
    _flights: dict[tuple[str, str], asyncio.Future[Any]]

    async def _load_and_fill(
        self,
        key: AnyKey,
        read: Read,
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
        ttl_ms = self._ttl_ms(ttl)
        raw = encode(value, delta_s * 1000, ttl_ms=ttl_ms)
        stored = await self._call(
            key.cache_type,
            "fill",
            lambda: self._fill_script(
                keys=[data_key], args=[expected, raw, ttl_ms, "1" if allow_absent else "0"]
            ),
        )
        if isinstance(stored, _Failed):
            return False
        if not stored:  # the lease was gone: an invalidation came first
            self.stats[key.cache_type].fills_refused += 1
            return False
        self.stats[key.cache_type].sets += 1
        return True

    async def _release(self, key: AnyKey, read: Read) -> None:
        """Give an unused lease back; when Redis cannot take it now, keep trying
        in the background until the lease would have expired anyway."""
        if not await self._try_release(key, read):
            self._spawn(self._release_later(key, read))

    async def _try_release(self, key: AnyKey, read: Read) -> bool:
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

    async def _release_later(self, key: AnyKey, read: Read) -> None:
        deadline = self._clock() + self.config.lease_ttl_ms / 1000
        delay = RELEASE_RETRY_FIRST_S
        while self._clock() < deadline:
            await asyncio.sleep(delay)
            if await self._try_release(key, read):
                return
            delay = min(delay * 2, max(self.breaker.open_s, RELEASE_RETRY_FIRST_S))


async def join_flight(flight: asyncio.Future[Any] | None, loader: Callable[[], Awaitable[T]]) -> T:
    """The value of a load under way in this process; our own load if there is
    none (the lease belongs to another process that is taking too long) or if
    that load was cancelled."""
    if flight is not None:
        try:
            return cast(T, await asyncio.shield(flight))
        except _Abandoned:
            pass
    return await loader()


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
