"""L1: a near cache in process, in front of Redis, kept coherent by Redis.

Entries are the stored bytes of Redis entries (decoded on every hit, so no
caller can change a cached value), least recently used out first, bounded in
entries and in bytes per cache type (a burst of list pages cannot push out
the user details that every request's token check reads). It is only
consulted while ``Tracking`` (Redis's
server-assisted client-side caching, BCAST on our prefixes) is connected and
the breaker is closed; every invalidation message received is processed
before a hit is served, and a value read from Redis is kept only if no
invalidation of its key arrived while it was being read. No entry is served
longer than ``max_age_s`` after it was stored, whatever its TTL, nor past
the moment its reader said (``put``'s ``serve_for_s``: when a read of it from
Redis might recompute it early).

Beside an entry, L1 keeps what readers made of it (``memo``: views of the
value by name, ``hita.cache.view``), dropped with the entry whatever drops
it, so a reader that served the entry once serves it again without decoding.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

FORGET_AFTER: Final = 10_000  # invalidated keys remembered, to fence in-flight reads

# Why L1 was emptied (``flush``).
TRACKING_LOST: Final = "tracking_lost"  # a tracking connection closed or failed
REDIS_FLUSHED: Final = "redis_flushed"  # Redis said every key changed (FLUSHALL, FLUSHDB)
BREAKER_OPEN: Final = "breaker_open"  # Redis is failing: L1 waits until it is well again
PATTERN: Final = "pattern_invalidation"  # a whole family was invalidated (cache clear)
TOPOLOGY: Final = "topology_changed"  # a new master, a slot moved: tracking follows it
FLUSH_REASONS: Final = (TRACKING_LOST, REDIS_FLUSHED, BREAKER_OPEN, PATTERN, TOPOLOGY)
# Why entries left L1 one by one, besides a flush.
BOUND: Final = "bound"  # least recently used, past the entry or byte bound
INVALIDATION: Final = "invalidation"  # its key (or namespace) changed in Redis
FLUSH: Final = "flush"
AGE: Final = "age"  # stored ``max_age_s`` ago
EARLY: Final = "early_refresh"  # due for early recomputation: read from Redis, which decides
EVICTION_REASONS: Final = (BOUND, INVALIDATION, FLUSH, AGE, EARLY)


@dataclass(slots=True)
class NearStats:
    hits: int = 0
    stores: int = 0
    evictions: int = 0  # past a bound
    invalidations: int = 0
    flushes: int = 0
    flush_reasons: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    # (cache type, reason) -> entries dropped: bound, invalidation, flush
    dropped: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


@dataclass(slots=True)
class _Part:
    """One cache type's share: its keys, least recently used first, and bytes."""

    name: str
    order: OrderedDict[str, None] = field(default_factory=OrderedDict)
    bytes: int = 0


@dataclass(slots=True)
class NearCache:
    max_entries: int  # per cache type
    max_bytes: int  # per cache type
    max_age_s: float = math.inf  # no entry is served longer after it was stored
    clock: Callable[[], float] = time.monotonic
    stats: NearStats = field(default_factory=NearStats)
    seq: int = 0  # grows with every invalidation processed
    # key -> its bytes, its cache type's share, served until (``clock``), and why not after
    _entries: dict[str, tuple[bytes, _Part, float, str]] = field(default_factory=dict)
    _parts: dict[str, _Part] = field(default_factory=dict)  # cache type -> its share
    _bytes: int = 0
    _generations: dict[str, str] = field(default_factory=dict)  # generation key -> token
    _by_generation: dict[str, set[str]] = field(default_factory=dict)  # gen key -> data keys
    _owner: dict[str, str] = field(default_factory=dict)  # data key -> its generation key
    _invalidated: dict[str, int] = field(default_factory=dict)  # key -> seq when invalidated
    _floor: int = 0  # reads begun before this seq may not store (``_invalidated`` was reset)
    _memos: dict[str, dict[str, object]] = field(default_factory=dict)  # key -> views of it

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def usage(self) -> dict[str, tuple[int, int]]:
        """Entries and bytes per cache type (every type stored since start)."""
        return {name: (len(part.order), part.bytes) for name, part in self._parts.items()}

    # -- reads -------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        held = self._entries.get(key)
        if held is None:
            return None
        raw, part, until, why = held
        if self.clock() >= until:
            self.stats.dropped[part.name, why] += 1
            self._drop(key)
            return None
        part.order.move_to_end(key)
        self.stats.hits += 1
        return raw

    def held(self, key: str) -> tuple[bytes, dict[str, object]] | None:
        """``get`` and ``memo`` in one call: the entry's bytes and what readers
        made of it, or None."""
        raw = self.get(key)
        return None if raw is None else (raw, self._memo_of(key))

    def generation(self, generation_key: str) -> str | None:
        return self._generations.get(generation_key)

    def memo(self, key: str) -> dict[str, object] | None:
        """What readers made of the entry of ``key``, by name (None: no entry).
        It lives exactly as long as the entry does."""
        return self._memo_of(key) if key in self._entries else None

    def _memo_of(self, key: str) -> dict[str, object]:
        memo = self._memos.get(key)
        if memo is None:
            memo = self._memos[key] = {}
        return memo

    # -- stores, fenced by what was invalidated meanwhile -------------------------

    def may_store(self, began: int, *keys: str) -> bool:
        """Did no invalidation of ``keys`` arrive since ``began`` (a ``seq``)?"""
        if began < self._floor:
            return False
        return all(self._invalidated.get(k, -1) <= began for k in keys)

    def put(
        self,
        key: str,
        raw: bytes,
        began: int,
        generation_key: str | None = None,
        *,
        cache_type: str = "",
        serve_for_s: float = math.inf,
    ) -> None:
        """Keep ``raw`` for ``key``, read from Redis when L1's sequence number
        was ``began``; served for ``serve_for_s`` at most (when sooner than
        ``max_age_s``: the moment a read of it from Redis would recompute it
        early, ``hita.cache.near_reads``). Not kept if a key of its fence was
        invalidated since ``began``, or if it may be served no longer."""
        fence = (key,) if generation_key is None else (key, generation_key)
        if len(raw) > self.max_bytes or not self.may_store(began, *fence):
            return
        self._drop(key)
        if serve_for_s <= 0:
            return
        part = self._parts.get(cache_type)
        if part is None:
            part = self._parts[cache_type] = _Part(cache_type)
        serve_for_s, why = (
            (serve_for_s, EARLY) if serve_for_s < self.max_age_s else (self.max_age_s, AGE)
        )
        self._entries[key] = (raw, part, self.clock() + serve_for_s, why)
        part.order[key] = None
        part.bytes += len(raw)
        self._bytes += len(raw)
        if generation_key is not None:
            self._owner[key] = generation_key
            self._by_generation.setdefault(generation_key, set()).add(key)
        self.stats.stores += 1
        while len(part.order) > self.max_entries or part.bytes > self.max_bytes:
            self._drop(next(iter(part.order)))
            self.stats.evictions += 1
            self.stats.dropped[part.name, BOUND] += 1

    def put_generation(self, generation_key: str, token: str, began: int) -> None:
        if self.may_store(began, generation_key):
            self._generations[generation_key] = token

    # -- invalidations -------------------------------------------------------------

    def invalidate(self, keys: list[str]) -> None:
        """Redis says these keys changed (or our own invalidation is under way)."""
        self.seq += 1
        self.stats.invalidations += 1
        if len(self._invalidated) + len(keys) > FORGET_AFTER:
            self._invalidated.clear()
            self._floor = self.seq
        for key in keys:
            self._invalidated[key] = self.seq
            self._evict(key)
            if self._generations.pop(key, None) is not None or key in self._by_generation:
                for data_key in self._by_generation.pop(key, set()):
                    self._evict(data_key)

    def flush(self, reason: str) -> None:
        """Forget everything; ``reason`` is one of ``FLUSH_REASONS``."""
        self.seq += 1
        self.stats.flushes += 1
        self.stats.flush_reasons[reason] += 1
        self._entries.clear()
        for part in self._parts.values():  # kept, so each type's figures stay listed
            self.stats.dropped[part.name, FLUSH] += len(part.order)
            part.order.clear()
            part.bytes = 0
        self._bytes = 0
        self._generations.clear()
        self._by_generation.clear()
        self._owner.clear()
        self._invalidated.clear()
        self._memos.clear()
        self._floor = self.seq

    def _evict(self, key: str) -> None:
        held = self._entries.get(key)
        if held is not None:
            self.stats.dropped[held[1].name, INVALIDATION] += 1
        self._drop(key)

    def _drop(self, key: str) -> None:
        self._memos.pop(key, None)
        held = self._entries.pop(key, None)
        if held is not None:
            raw, part, _, _ = held
            del part.order[key]
            part.bytes -= len(raw)
            self._bytes -= len(raw)
        owner = self._owner.pop(key, None)
        if owner is not None:
            members = self._by_generation.get(owner)
            if members is not None:
                members.discard(key)
