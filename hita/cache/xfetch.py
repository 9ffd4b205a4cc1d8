"""XFetch (probabilistic early recomputation): a hit recomputes its entry
shortly before it expires, with a probability that grows as expiry nears and
with how long the value took to compute, so hot entries practically never
miss. The recomputed value replaces the entry only if it is still the version
read (an invalidation meanwhile wins)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hita.cache.codec import Entry
from hita.cache.keys import AnyKey, NamespacedKey
from hita.cache.leases import Leases
from hita.cache.outcome import Read

log = logging.getLogger(__name__)


class EarlyRefresh(Leases):
    _refreshing: set[str]

    def _maybe_refresh_early(
        self, key: AnyKey, read: Read, loader: Callable[[], Awaitable[Any]], ttl: float
    ) -> None:
        """XFetch: recompute early with a probability that grows as expiry nears
        and with how long the value took to compute."""
        entry = read.entry
        if entry is None or read.pttl_ms < 0:
            return
        early_ms = entry.early_ms(self.config.xfetch_beta, self._rng())
        if early_ms <= 0 or early_ms < read.pttl_ms:
            return
        if read.data_key in self._refreshing:
            return
        self._refreshing.add(read.data_key)
        self._spawn(self._refresh_early(key, read, entry, loader, ttl))

    async def _refresh_early(
        self,
        key: AnyKey,
        read: Read,
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
