"""How a cache entry is stored: a small fixed header, then orjson.

    value:  b"v" + version (16 hex) + compute time in ms (8 hex) + JSON payload
    lease:  b"l" + token (16 hex)

The version lets a writer replace exactly the value it read (early refresh);
the lease token lets only the reader that saw the miss fill it, so a value
read from PostgreSQL before an invalidation can never be stored after it
(leases as in "Scaling Memcache at Facebook", NSDI 2013). The compute time
feeds probabilistic early recomputation (XFetch, Vattani et al., VLDB 2015).
A cached ``0``, ``[]``, ``{}``, ``""``, ``False`` or ``None`` is a value like
any other: only the ``MISS`` sentinel means "not in the cache".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, Final

import orjson

VALUE: Final = b"v"
LEASE: Final = b"l"
TOKEN_CHARS: Final = 16
DELTA_CHARS: Final = 8
HEADER_BYTES: Final = 1 + TOKEN_CHARS + DELTA_CHARS
MAX_DELTA_MS: Final = 0xFFFFFFFF

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


@dataclass(frozen=True, slots=True)
class Entry:
    version: str
    delta_ms: int
    payload: bytes

    @property
    def value(self) -> Any:
        return orjson.loads(self.payload)


def encode(value: Any, delta_ms: float = 0.0, version: str | None = None) -> bytes:
    delta = min(max(int(delta_ms), 0), MAX_DELTA_MS)
    header = VALUE + (version or new_token()).encode() + f"{delta:08x}".encode()
    return header + dumps(value)


def encode_lease(token: str) -> bytes:
    return LEASE + token.encode()


def decode(raw: bytes | None) -> Entry | None:
    """The stored value, or None for an absent key, a lease or foreign data."""
    if not raw or raw[:1] != VALUE or len(raw) < HEADER_BYTES:
        return None
    try:
        delta = int(raw[1 + TOKEN_CHARS : HEADER_BYTES], 16)
    except ValueError:
        return None
    return Entry(raw[1 : 1 + TOKEN_CHARS].decode(), delta, raw[HEADER_BYTES:])
