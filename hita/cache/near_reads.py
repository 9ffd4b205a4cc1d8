"""L1's side of a read: whether it may serve, what it holds for a key (and the
views kept beside it), and what a read from Redis leaves in it. The rules
(docs/cache.md): L1 serves only while tracking is up on every master, the
breaker is closed and every invalidation received is applied; a value read
from Redis is kept only if no invalidation of its key arrived meanwhile; an
entry past its TTL is dropped, never served."""

from __future__ import annotations

import logging
import math
from typing import Any, Final, TypeVar, cast

import orjson

from hita.cache.codec import MISS, NO_EXPIRY, Entry, _Miss, decode, now_ms
from hita.cache.core import CacheCore
from hita.cache.keys import AnyKey, Key
from hita.cache.near import NearCache
from hita.cache.outcome import HIT, Read
from hita.cache.stats import L1
from hita.cache.view import View

log = logging.getLogger(__name__)

T = TypeVar("T")


class NearReads(CacheCore):
    def _near_hit(self, key: AnyKey) -> Any:
        """The value L1 holds for ``key``, or MISS (also when L1 may not serve)."""
        near = self._serving_near()
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
        reading through the cache as usual. The warm path of every cached
        read: a few lookups, in one function."""
        if self.near is None or self.pending.covers(key):  # no L1 at all: at once
            return MISS
        near = self._serving_near()
        if near is None:
            return MISS
        data_key = key.redis_key if isinstance(key, Key) else _near_key(near, key)
        held = None if data_key is None else near.held(data_key)
        if held is None:
            return MISS
        assert data_key is not None
        raw, memo = held
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

    def _keep_near(self, key: AnyKey, read: Read, began: int | None) -> None:
        """A hit read from Redis goes into L1, unless its key (or namespace) was
        invalidated while it was in flight; it is served until a read of it
        from Redis might recompute it early (``_serve_for_s``)."""
        near = self._usable_near()
        if near is None or began is None or read.status != HIT or not read.raw:
            return
        generation_key = None
        if not isinstance(key, Key):
            if read.generation is None:
                return
            generation_key = key.namespace.generation_key
            near.put_generation(generation_key, read.generation, began)
        near.put(
            read.data_key,
            read.raw,
            began,
            generation_key,
            cache_type=key.cache_type,
            serve_for_s=self._serve_for_s(read),
        )

    def _serve_for_s(self, read: Read) -> float:
        """How long L1 serves an entry read from Redis: until the moment XFetch
        would recompute it early for a draw made now (``Entry.early_ms``), then
        the next read goes to Redis, where the early refresh is decided as for
        any read (``hita.cache.xfetch``). Served from L1 to its TTL, a hot
        entry would never be recomputed before it expires, and every instance
        would load it again from PostgreSQL on the request path. Unbounded
        (L1's own maximum age applies) when it is never recomputed early."""
        entry = read.entry
        if entry is None:
            return math.inf
        early_ms = entry.early_ms(self.config.xfetch_beta, self._rng())
        return math.inf if early_ms <= 0 else (entry.expires_ms - now_ms() - early_ms) / 1000

    def _value(self, key: AnyKey, entry: Entry) -> Any:
        try:
            return entry.value
        except orjson.JSONDecodeError:
            self.stats[key.cache_type].errors += 1
            log.error("cache entry of type %s is not valid JSON; ignoring it", key.cache_type)
            return MISS


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
