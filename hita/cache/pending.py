"""Invalidations this process knows of but has not yet seen applied to Redis.

An entry here is *suspect*: no read serves it from Redis until this process
has itself seen an invalidation of it succeed (an acknowledged ``UNLINK`` or
generation bump issued after it was added). Reads of suspect entries go to
the loader (PostgreSQL); reads of every other entry are untouched.

Each addition gets a ticket from a counter (``epoch``); applying a snapshot
discards only what was not added again since, so a newer invalidation of
the same entry is never dropped by an older success. Memory stays bounded:
past ``max_keys`` single keys, each family with pending keys is invalidated
wholesale (by pattern) instead.

Beyond what it knows of, a process trusts Redis only until ``trusted_until``
(a time on its monotonic clock): its lease as a reader (``hita.services.coherence``).
Past it, it cannot know which writes it has missed, and every entry is suspect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hita.cache.keys import AnyKey, Key, Namespace, NamespacedKey


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What one change invalidates: namespaces to bump, entries to delete,
    and family patterns (``user_details:*``) to delete by SCAN."""

    namespaces: tuple[Namespace, ...] = ()
    keys: tuple[Key, ...] = ()
    patterns: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.keys or self.patterns)


@dataclass(frozen=True, slots=True)
class Snapshot:
    invalidation: Invalidation
    ticket: int


@dataclass(slots=True)
class PendingInvalidations:
    max_keys: int
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    keys: dict[str, Key] = field(default_factory=dict)
    patterns: dict[str, str] = field(default_factory=dict)  # pattern -> family
    trusted_until: float = math.inf  # on ``clock``; past it, everything is suspect
    clock: Callable[[], float] = time.monotonic
    epoch: int = 0  # grows with every addition; tickets are epochs
    _tickets: dict[str, int] = field(default_factory=dict)  # item -> its newest addition
    _oldest: dict[str, int] = field(default_factory=dict)  # item -> oldest one not applied
    _families: set[str] = field(default_factory=set)  # families under a pending pattern

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.keys or self.patterns)

    def __len__(self) -> int:
        return len(self.namespaces) + len(self.keys) + len(self.patterns)

    def oldest_ticket(self) -> int | None:
        """The ticket of the longest-pending item (None: nothing pending)."""
        return min(self._tickets.values(), default=None)

    # -- what reads ask ------------------------------------------------------

    @property
    def trusted(self) -> bool:
        """Does this process's lease let it trust Redis beyond what it knows of?"""
        return self.clock() < self.trusted_until

    def covers(self, key: AnyKey) -> bool:
        """Must a read of ``key`` stay away from Redis? (Every read asks, some
        twice: nothing pending is answered without a call.)"""
        if self.clock() >= self.trusted_until:
            return True
        if not (self.namespaces or self.keys or self.patterns):
            return False
        return self.covers_specifically(key)

    def covers_specifically(self, key: AnyKey) -> bool:
        """Is an invalidation of ``key`` itself pending (the lease aside)?"""
        if not self:
            return False
        if isinstance(key, NamespacedKey):
            return key.namespace.name in self.namespaces
        return key.redis_key in self.keys or key.cache_type in self._families

    # -- what writers add ----------------------------------------------------

    def add(
        self,
        invalidation: Invalidation,
        family_of: Callable[[str], str],
        pattern_of: Callable[[str], str],
    ) -> int:
        """Make everything in ``invalidation`` suspect; returns its ticket.
        ``family_of`` names a pattern's family (``user_details``);
        ``pattern_of`` gives a family's whole pattern (``user_details:*``)."""
        self.epoch += 1
        for namespace in invalidation.namespaces:
            self.namespaces[namespace.name] = namespace
            self._mark("n:" + namespace.name)
        for pattern in invalidation.patterns:
            family = family_of(pattern)
            self._add_pattern(pattern, family, whole=pattern == pattern_of(family))
        for key in invalidation.keys:
            whole = pattern_of(key.cache_type)
            if whole in self.patterns:  # the whole family's pending pattern stands for
                self._mark("p:" + whole)  # the key, and is now as new as it
                continue
            self.keys[key.redis_key] = key
            self._mark("k:" + key.redis_key)
        if len(self.keys) > self.max_keys:
            for family in {key.cache_type for key in self.keys.values()}:
                self._add_pattern(pattern_of(family), family, whole=True)
        return self.epoch

    def _add_pattern(self, pattern: str, family: str, *, whole: bool) -> None:
        """Any pattern makes its whole family suspect; only the whole family's
        pattern (``user_details:*``) also stands for the family's pending keys,
        since only its deletion removes them all."""
        self.patterns[pattern] = family
        self._families.add(family)
        self._mark("p:" + pattern)
        if not whole:
            return
        for redis_key in [k for k, key in self.keys.items() if key.cache_type == family]:
            del self.keys[redis_key]
            self._tickets.pop("k:" + redis_key, None)
            oldest = self._oldest.pop("k:" + redis_key, self.epoch)
            self._oldest["p:" + pattern] = min(self._oldest["p:" + pattern], oldest)

    def _mark(self, item: str) -> None:
        self._tickets[item] = self.epoch
        self._oldest.setdefault(item, self.epoch)

    # -- what the applier does ---------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(
            Invalidation(
                tuple(self.namespaces.values()),
                tuple(self.keys.values()),
                tuple(sorted(self.patterns)),
            ),
            self.epoch,
        )

    def applied(self, invalidation: Invalidation, ticket: int) -> None:
        """``invalidation`` (taken at ``ticket``) reached Redis: forget what was
        not added again since."""
        for namespace in invalidation.namespaces:
            if self._settle("n:" + namespace.name, ticket):
                self.namespaces.pop(namespace.name, None)
        for key in invalidation.keys:
            if self._settle("k:" + key.redis_key, ticket):
                self.keys.pop(key.redis_key, None)
        for pattern in invalidation.patterns:
            if self._settle("p:" + pattern, ticket):
                family = self.patterns.pop(pattern, None)
                if family is not None and family not in self.patterns.values():
                    self._families.discard(family)

    def settled_through(self) -> int:
        """The latest ticket up to which every addition has been applied."""
        return min(self._oldest.values(), default=self.epoch + 1) - 1

    def _settle(self, item: str, ticket: int) -> bool:
        """An application taken at ``ticket`` reached Redis: lift ``item`` unless
        it was added again since (then only its later additions are owed)."""
        current = self._tickets.get(item)
        if current is None:
            return False
        if current > ticket:
            self._oldest[item] = max(self._oldest[item], ticket + 1)
            return False
        del self._tickets[item]
        del self._oldest[item]
        return True
