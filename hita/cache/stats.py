"""In-process counters per cache type, read by the stats endpoints and metrics."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class TypeCounters:
    hits: int = 0
    misses: int = 0
    errors: int = 0
    sets: int = 0
    invalidations: int = 0
    lease_waits: int = 0  # a reader waited for another loader
    early_refreshes: int = 0  # XFetch recomputed before expiry

    @property
    def hit_rate(self) -> float:
        """Percent of reads served from the cache, two decimals."""
        reads = self.hits + self.misses
        return round(100.0 * self.hits / reads, 2) if reads else 0.0

    def as_dict(self) -> dict[str, int | float]:
        return {**asdict(self), "hit_rate": self.hit_rate}


@dataclass(slots=True)
class CacheStats:
    types: defaultdict[str, TypeCounters] = field(default_factory=lambda: defaultdict(TypeCounters))
    breaker_transitions: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    # (cache type, cause) -> invalidations requested; causes: http, cli, admin, code...
    invalidation_causes: defaultdict[tuple[str, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    # reads served from Redis while the source was down for every instance
    served_while_source_down: int = 0

    def __getitem__(self, cache_type: str) -> TypeCounters:
        return self.types[cache_type]

    def invalidated(self, cache_type: str, cause: str) -> None:
        self.types[cache_type].invalidations += 1
        self.invalidation_causes[cache_type, cause] += 1

    def totals(self) -> TypeCounters:
        total = TypeCounters()
        for counters in self.types.values():
            for name in (
                "hits",
                "misses",
                "errors",
                "sets",
                "invalidations",
                "lease_waits",
                "early_refreshes",
            ):
                setattr(total, name, getattr(total, name) + getattr(counters, name))
        return total

    def snapshot(self) -> dict[str, dict[str, int | float]]:
        return {name: counters.as_dict() for name, counters in sorted(self.types.items())}
