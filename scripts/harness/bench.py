"""What the benchmarks share: their data folder, a realistic cached document,
the L1 switch they measure both ways, and a private Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from hita.config import PROJECT_ROOT, SETTINGS
from hita.embedded import EmbeddedRedis

from harness.ports import free_port

BENCH_ROOT: Final = PROJECT_ROOT / ".hita" / "bench"
L1_SETTING: Final = "CACHE_L1_ENABLED"
# A realistic user details document, about 400 bytes of JSON.
DOCUMENT: Final = {
    "id": "1000000042",
    "username": "amelie.fontaine42",
    "email": "amelie.fontaine42@example.org",
    "full_name": "Amélie Fontaine",
    "role": "user",
    "is_active": True,
    "points": 12_840,
    "permissions": ["booking:read", "booking:write", "spa:book"],
    "created_at": "2025-03-14T09:26:53.589Z",
    "updated_at": "2026-10-02T17:45:12.004Z",
    "last_login_at": "2026-11-20T08:01:44.321Z",
}


def has_l1_setting() -> bool:
    """Whether this HITA has the L1 near cache's switch; the benchmarks then
    report both settings."""
    return any(s.name == L1_SETTING for s in SETTINGS)


def l1_variants() -> list[bool | None]:
    """``[False, True]`` when the switch exists, else ``[None]`` (no such setting)."""
    return [False, True] if has_l1_setting() else [None]


def l1_label(enabled: bool | None) -> str:
    if enabled is None:
        return ""
    return ", L1 on" if enabled else ", L1 off"


@contextmanager
def private_redis(name: str, cpu: int | None = None) -> Iterator[str]:
    """``REDIS_URL`` when set, else a private redis-server on a loopback port
    (pinned to ``cpu`` when given)."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(BENCH_ROOT / name, port=free_port())
    server.start()
    if cpu is not None:
        os.sched_setaffinity(server.process.pid, {cpu})
    try:
        yield server.url
    finally:
        server.stop()
