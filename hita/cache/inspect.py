"""What Redis says about itself, shaped for the seed's monitoring endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def hit_rate(hits: int, misses: int) -> float:
    """Percent, two decimals; 0.0 before any read."""
    total = hits + misses
    return round(100.0 * hits / total, 2) if total else 0.0


@dataclass(frozen=True, slots=True)
class RedisInfo:
    redis_version: str
    redis_mode: str
    used_memory: str
    used_memory_peak: str
    memory_fragmentation_ratio: float
    connected_clients: int
    total_connections_received: int
    total_commands_processed: int
    uptime_in_seconds: int
    keyspace_hits: int
    keyspace_misses: int
    used_memory_bytes: int = 0
    maxmemory_bytes: int = 0  # 0: no limit
    nodes: int = 1  # servers whose INFO is summed here (a cluster's primaries)

    @property
    def hit_rate(self) -> float:
        return hit_rate(self.keyspace_hits, self.keyspace_misses)

    @classmethod
    def parse(cls, info: Mapping[str, Any]) -> RedisInfo:
        return cls(
            redis_version=str(info.get("redis_version", "")),
            redis_mode=str(info.get("redis_mode", "standalone")),
            used_memory=str(info.get("used_memory_human", "")),
            used_memory_peak=str(info.get("used_memory_peak_human", "")),
            memory_fragmentation_ratio=float(info.get("mem_fragmentation_ratio", 0.0)),
            connected_clients=int(info.get("connected_clients", 0)),
            total_connections_received=int(info.get("total_connections_received", 0)),
            total_commands_processed=int(info.get("total_commands_processed", 0)),
            uptime_in_seconds=int(info.get("uptime_in_seconds", 0)),
            keyspace_hits=int(info.get("keyspace_hits", 0)),
            keyspace_misses=int(info.get("keyspace_misses", 0)),
            used_memory_bytes=int(info.get("used_memory", 0)),
            maxmemory_bytes=int(info.get("maxmemory", 0)),
            nodes=int(info.get("hita_nodes", 1)),
        )


@dataclass(slots=True)
class KeyCounts:
    """Keys per family, from one SCAN pass. If the time budget runs out first,
    the counts are scaled up to the database size and marked as estimates."""

    counts: dict[str, int] = field(default_factory=dict)
    scanned: int = 0
    complete: bool = True

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, family: str) -> None:
        self.counts[family] = self.counts.get(family, 0) + 1

    def extrapolate(self, dbsize: int) -> None:
        """Scale partial counts up to ``dbsize`` keys (SCAN visits keys in hash
        order, which is as good as random here)."""
        self.complete = False
        if self.scanned:
            factor = dbsize / self.scanned
            self.counts = {k: round(v * factor) for k, v in self.counts.items()}
