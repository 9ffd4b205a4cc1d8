"""What one read of an entry found (``Read``), as the read paths and the lease
paths pass it between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hita.cache.codec import Entry, decode

HIT: Final = 1
MISSED: Final = 0  # absent: the lease is ours (``token``)
BUSY: Final = 2  # absent, another reader's lease on it (``token``)


@dataclass(slots=True)
class Read:
    status: int  # HIT, MISSED or BUSY
    data_key: str
    token: str = ""  # lease token: ours after a miss, another reader's when busy
    entry: Entry | None = None
    pttl_ms: int = -1
    raw: bytes = b""  # a hit's stored bytes
    generation: str | None = None  # a namespaced key's generation, as read


def hit(data_key: str, raw: bytes | None, generation: str | None = None) -> Read | None:
    """A hit read with plain commands, or None (absent, a lease, foreign data)."""
    entry = decode(raw)
    if raw is None or entry is None:
        return None
    return Read(HIT, data_key, entry=entry, pttl_ms=entry.ttl_ms(), raw=raw, generation=generation)
