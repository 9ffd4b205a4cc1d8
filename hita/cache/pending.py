"""Invalidations that could not reach Redis, kept until they can.

The seed loses an invalidation when Redis is down, so an old entry that is
still in Redis's memory is served again once Redis answers. Here the cache
remembers it, and applies everything pending before it serves any read from
Redis again. Memory stays bounded: past ``max_keys`` single keys, each family
with pending keys is invalidated wholesale (by pattern) instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hita.cache.keys import Key, Namespace


@dataclass(slots=True)
class PendingInvalidations:
    max_keys: int
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    keys: dict[str, Key] = field(default_factory=dict)
    patterns: set[str] = field(default_factory=set)
    _family_patterns: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.keys or self.patterns)

    def __len__(self) -> int:
        return len(self.namespaces) + len(self.keys) + len(self.patterns)

    def add_namespace(self, namespace: Namespace) -> None:
        self.namespaces[namespace.name] = namespace

    def add_key(self, key: Key, family_pattern: str) -> None:
        if family_pattern in self.patterns:
            return
        self._family_patterns[key.cache_type] = family_pattern
        self.keys[key.redis_key] = key
        if len(self.keys) > self.max_keys:
            self._collapse()

    def add_pattern(self, pattern: str) -> None:
        self.patterns.add(pattern)
        covered = [
            k
            for k, key in self.keys.items()
            if self._family_patterns.get(key.cache_type) == pattern
        ]
        for name in covered:
            del self.keys[name]

    def _collapse(self) -> None:
        families = {key.cache_type for key in self.keys.values()}
        for family in families:
            self.patterns.add(self._family_patterns[family])
        self.keys.clear()

    def discard_namespace(self, name: str) -> None:
        self.namespaces.pop(name, None)

    def discard_key(self, redis_key: str) -> None:
        self.keys.pop(redis_key, None)

    def discard_pattern(self, pattern: str) -> None:
        self.patterns.discard(pattern)

    def merge(self, other: PendingInvalidations) -> None:
        """Take back what a failed flush could not apply."""
        for namespace in other.namespaces.values():
            self.add_namespace(namespace)
        for pattern in other.patterns:
            self.add_pattern(pattern)
        for key in other.keys.values():
            self.add_key(key, other._family_patterns[key.cache_type])
