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

``blind`` marks a process that cannot know which writes it has missed (its
notification channel is down): then every entry is suspect.
"""

from __future__ import annotations

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
    blind: bool = False
    epoch: int = 0  # grows with every addition; tickets are epochs
    _tickets: dict[str, int] = field(default_factory=dict)
    _families: set[str] = field(default_factory=set)  # families under a pending pattern

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.keys or self.patterns)

    def __len__(self) -> int:
        return len(self.namespaces) + len(self.keys) + len(self.patterns)

    def oldest_ticket(self) -> int | None:
        """The ticket of the longest-pending item (None: nothing pending)."""
        return min(self._tickets.values(), default=None)

    # -- what reads ask ------------------------------------------------------

    def covers(self, key: AnyKey) -> bool:
        """Must a read of ``key`` stay away from Redis?"""
        if self.blind:
            return True
        return self.covers_specifically(key)

    def covers_specifically(self, key: AnyKey) -> bool:
        """Is an invalidation of ``key`` itself pending (blindness aside)?"""
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
            self._tickets["n:" + namespace.name] = self.epoch
        for pattern in invalidation.patterns:
            self._add_pattern(pattern, family_of(pattern))
        for key in invalidation.keys:
            if key.cache_type in self._families:
                continue
            self.keys[key.redis_key] = key
            self._tickets["k:" + key.redis_key] = self.epoch
        if len(self.keys) > self.max_keys:
            for family in {key.cache_type for key in self.keys.values()}:
                self._add_pattern(pattern_of(family), family)
        return self.epoch

    def _add_pattern(self, pattern: str, family: str) -> None:
        """A pattern makes its whole family suspect, whatever part it names."""
        self.patterns[pattern] = family
        self._families.add(family)
        self._tickets["p:" + pattern] = self.epoch
        for redis_key in [k for k, key in self.keys.items() if key.cache_type == family]:
            del self.keys[redis_key]
            self._tickets.pop("k:" + redis_key, None)

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
                if family is not None:
                    self._families.discard(family)

    def _settle(self, item: str, ticket: int) -> bool:
        current = self._tickets.get(item)
        if current is None or current > ticket:
            return False
        del self._tickets[item]
        return True
