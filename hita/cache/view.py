"""``View``: what a reader makes of a cached value, kept beside it in L1.

A reader that turns an entry into something of its own (an answer ready to
send, the facts a token check needs) names that, and the cache keeps it
beside the entry the first time L1 serves the entry: the next hit is a
lookup, with nothing decoded or encoded. It is dropped with the entry (the
same invalidation, flush or eviction), so it is never older than the entry.
The cache knows nothing of what a view holds: an object under a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from hita.cache.codec import MISS, _Miss

T = TypeVar("T")

# What a reader gets when the view is not at hand without waiting: it then
# reads through the cache (``UserService.held_user_view``).
NOT_HELD: Final = MISS
NotHeld = _Miss


@dataclass(frozen=True, slots=True)
class View(Generic[T]):
    name: str  # readers that make different things of one entry use different names
    derive: Callable[[Any], T]  # from the value, as ``get_or_load`` would return it
