"""How a cache entry is stored: a small fixed header, then orjson.

    value:  b"e" + version (16 hex) + compute time in ms (8 hex)
                 + expiry in ms since the epoch (12 hex) + JSON payload
    lease:  b"l" + token (16 hex)

The expiry in the header spares a hit its PTTL: a hit is one plain GET. It is
the writer's wall clock plus the TTL it stored with, so it is as good as the
clocks agree between instances; early recomputation and L1 read it.

The version lets a writer replace exactly the value it read (early refresh);
the lease token lets only the reader that saw the miss fill it, so a value
read from PostgreSQL before an invalidation can never be stored after it
(leases as in "Scaling Memcache at Facebook", NSDI 2013). The compute time
feeds probabilistic early recomputation (XFetch, Vattani et al., VLDB 2015).
A cached ``0``, ``[]``, ``{}``, ``""``, ``False`` or ``None`` is a value like
any other: only the ``MISS`` sentinel means "not in the cache".
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, Final

import orjson

VALUE: Final = b"e"
LEASE: Final = b"l"
TOKEN_CHARS: Final = 16
DELTA_CHARS: Final = 8
EXPIRY_CHARS: Final = 12
DELTA_END: Final = 1 + TOKEN_CHARS + DELTA_CHARS
HEADER_BYTES: Final = DELTA_END + EXPIRY_CHARS
MAX_DELTA_MS: Final = 0xFFFFFFFF
NO_EXPIRY: Final = -1

_DUMPS_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = _Miss()


def new_token() -> str:
    return secrets.token_hex(TOKEN_CHARS // 2)


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON-safe")


def dumps(value: Any) -> bytes:
    """JSON bytes; datetimes as ISO 8601 UTC with Z, decimals as strings."""
    return orjson.dumps(value, default=_default, option=_DUMPS_OPTIONS)


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch: the expiry's clock."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Entry:
    version: str
    delta_ms: int
    payload: bytes
    expires_ms: int = NO_EXPIRY  # ms since the epoch; NO_EXPIRY when not known

    @property
    def value(self) -> Any:
        return orjson.loads(self.payload)

    def early_ms(self, beta: float, draw: float) -> float:
        """XFetch (Vattani et al.): how long before its expiry a reader whose
        ``draw`` (uniform in [0, 1)) it is recomputes this entry,
        ``-delta * beta * ln(1 - draw)``: longer the longer it took to compute.
        0 when ``beta`` or its compute time is 0, or its expiry is not known."""
        if beta <= 0 or self.delta_ms <= 0 or self.expires_ms == NO_EXPIRY:
            return 0.0
        return -self.delta_ms * beta * math.log(1.0 - draw)

    def ttl_ms(self) -> int:
        """What is left of its time to live, as its writer's clock saw it
        (-1 when not known, 0 when past)."""
        if self.expires_ms == NO_EXPIRY:
            return NO_EXPIRY
        return max(self.expires_ms - now_ms(), 0)


def encode(value: Any, delta_ms: float = 0.0, version: str | None = None, *, ttl_ms: int) -> bytes:
    """``value`` stored for ``ttl_ms`` (the TTL the writer sets on the key)."""
    delta = min(max(int(delta_ms), 0), MAX_DELTA_MS)
    expires = now_ms() + ttl_ms
    header = b"%s%s%08x%012x" % (VALUE, (version or new_token()).encode(), delta, expires)
    return header + dumps(value)


def encode_lease(token: str) -> bytes:
    return LEASE + token.encode()


def decode(raw: bytes | None) -> Entry | None:
    """The stored value, or None for an absent key, a lease or foreign data."""
    if not raw:
        return None
    marker = raw[:1]
    if marker != VALUE or len(raw) < HEADER_BYTES:
        return None
    try:
        delta = int(raw[1 + TOKEN_CHARS : DELTA_END], 16)
        expires = int(raw[DELTA_END:HEADER_BYTES], 16)
        version = raw[1 : 1 + TOKEN_CHARS].decode()
    except ValueError:  # not hex, or not ASCII: foreign data
        return None
    return Entry(version, delta, raw[HEADER_BYTES:], expires)
